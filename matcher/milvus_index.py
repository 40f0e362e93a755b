"""A gallery's index held in Milvus, behind the same interface as FlatIndex.

For deployments that outgrow one machine, Milvus (standalone or a cluster)
holds each gallery as one collection of (template id, vector) rows; Milvus
Lite (a uri ending in ".db": embedded, in-process) runs the same code in tests
and on single machines. The store stays the source of truth: Milvus holds
template ids (the store's int64 ids) and vectors (plain, or transformed under
template protection), never reference ids or names, and `iter_contents` lets
the engine check it against the store's digest at start-up (docs/milvus.md).

Units: Milvus reports L2 as the *squared* distance and COSINE as similarity
(Milvus Lite too: its engine squares the Euclidean norm for the public score);
scores leave here in FlatIndex's units: Euclidean distance, cosine similarity.

Consistency: collections are created with, and every read asks for, Strong
consistency, so a search after add/remove sees it without a flush (Milvus
rate-limits flushes, which seal small segments: not one per write). Milvus
Lite applies writes at once but searches unflushed rows by a slow NumPy
broadcast, so on Lite this module flushes once enough rows are pending.

Limits: a 1:few subset goes to Milvus as a literal `id in [...]` filter (Lite
takes no templated filters). Adds are inserts: Milvus does not enforce unique
primary keys (Lite keeps the last row), so the engine adds each id once.
Deleted vectors leave Milvus's files only when it compacts (Lite: only when
its own size-tiered compaction merges the segment).

Thread-safety as FlatIndex: callers serialise mutation; concurrent searches are
fine (pymilvus's gRPC channel is thread-safe).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import numpy as np
import numpy.typing as npt
from pymilvus import DataType, MilvusClient  # type: ignore[import-untyped]
from pymilvus.exceptions import MilvusException  # type: ignore[import-untyped]

from matcher.errors import BackendUnavailable, InvalidVector, SnapshotRejected
from matcher.metric import Metric, normalise_rows
from matcher.search import Hits
from matcher.vectors import check_gallery_id

log = logging.getLogger(__name__)

ID_FIELD, VECTOR_FIELD = "id", "vector"
_STRONG = {"consistency_level": "Strong"}
ParamValue = int | float | str | bool
_METRICS = {Metric.L2: "L2", Metric.COSINE: "COSINE"}
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_INDEX_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
# A few MB per request, far below Milvus's 64 MB gRPC limit and its nq cap of 16384.
_WRITE_BYTES = 8 << 20
_IDS_PER_CALL = 4096
_PROBES_PER_CALL = 1024
# Lite's FLAT scores a batch by one (probes x rows x dimension) NumPy broadcast: one probe per
# call bounds that memory to rows x dimension and was faster (36 ms vs 69 ms a probe at 20k x 128);
# its FAISS-backed types gain from batches as a server does (IVF_FLAT: 15 ms a probe alone, 0.6 in 64).
_LITE_FLAT_PROBES_PER_CALL = 1
# Lite searches pending rows by a (probes x rows x dimension) broadcast: 20k
# pending 128-d rows cost ~0.4 s a probe, ~0.05 s once flushed; a flush ~30 ms.
_LITE_FLUSH_ROWS = 1024


@dataclass(frozen=True)
class MilvusTls:
    """TLS to a Milvus server: paths to PEM files (pymilvus's secure-channel options).

    One-way TLS: `server_pem_path` (or nothing, for an https:// uri with a
    publicly trusted certificate). Mutual TLS: ca, client certificate and key.
    """

    server_pem_path: str = ""
    server_name: str = ""  # overrides the name checked in the server's certificate
    ca_pem_path: str = ""
    client_pem_path: str = ""
    client_key_path: str = ""

    def __post_init__(self) -> None:
        mutual = (self.ca_pem_path, self.client_pem_path, self.client_key_path)
        if any(mutual) and not all(mutual):
            raise ValueError("mutual TLS needs ca_pem_path, client_pem_path and client_key_path together")

    def options(self) -> dict[str, Any]:
        given = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {"secure": True, **{name: value for name, value in given.items() if value}}


@dataclass(frozen=True)
class MilvusSettings:
    """Where Milvus is and how galleries are indexed there.

    uri: a path ending in ".db" (Milvus Lite; a folder) or http(s)://, tcp://,
    unix: for a server. token: "user:password" or an API key (never logged or
    shown). index_type/index_params/search_params: Milvus's own (FLAT is exact;
    IVF_FLAT {"nlist"} / {"nprobe"}; HNSW {"M", "efConstruction"} / {"ef"}, ef
    raised to k where lower). timeout_s bounds each call, pymilvus's retries included.
    """

    uri: str
    token: str = ""
    db_name: str = ""
    index_type: str = "FLAT"
    index_params: Mapping[str, ParamValue] = field(default_factory=dict)
    search_params: Mapping[str, ParamValue] = field(default_factory=dict)
    collection_prefix: str = "sp_"
    timeout_s: float = 30.0
    tls: MilvusTls | None = None

    def __post_init__(self) -> None:
        if not self.is_lite and urlsplit(self.uri).scheme not in ("http", "https", "tcp", "unix"):
            raise ValueError(
                f"milvus uri {self.display_uri!r} must end in .db (Milvus Lite)"
                " or start with http://, https://, tcp:// or unix:"
            )
        if not _INDEX_TYPE.fullmatch(self.index_type):
            raise ValueError(f"milvus index type {self.index_type!r} is not a Milvus index type name")
        if not _PREFIX.fullmatch(self.collection_prefix):
            raise ValueError("milvus collection prefix: letters, digits or '_', not starting with a digit")
        if not self.timeout_s > 0:
            raise ValueError("milvus timeout_s must be positive")
        if self.is_lite and self.tls is not None:
            raise ValueError("TLS does not apply to Milvus Lite (a local .db path)")

    def __repr__(self) -> str:
        # The uri may carry user:password; the token is never shown.
        return (
            f"MilvusSettings(uri={self.display_uri!r}, db_name={self.db_name!r},"
            f" index_type={self.index_type!r}, index_params={dict(self.index_params)!r},"
            f" search_params={dict(self.search_params)!r}, tls={self.tls is not None})"
        )

    @property
    def is_lite(self) -> bool:
        return self.uri.endswith(".db")

    @property
    def display_uri(self) -> str:
        """The uri without credentials (user:password@ in it), for logs and errors."""
        parts = urlsplit(self.uri)
        if self.is_lite or "@" not in parts.netloc:
            return self.uri
        return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def collection_name(gallery_id: str, prefix: str = "sp_") -> str:
    """prefix + gallery id with '_' -> '__' and '-' -> '_d'.

    Collection names take letters, digits and '_' only; escaping '_' too keeps
    the mapping one-to-one ("a-b" and "a_b" are different galleries).
    """
    return prefix + check_gallery_id(gallery_id).replace("_", "__").replace("-", "_d")


# Milvus Lite runs one in-process server per .db folder, holding the folder's
# lock, which pymilvus stops only at exit. Count our connections per folder and
# stop it when the last closes, so the folder can be reopened (here or elsewhere).
_lite_lock = threading.Lock()
_lite_users: dict[str, int] = {}


def _release_lite(path: str) -> None:
    with _lite_lock:
        _lite_users[path] -= 1
        if _lite_users[path] > 0:
            return
        del _lite_users[path]
    from milvus_lite.server_manager import server_manager_instance  # type: ignore[import-untyped]

    server_manager_instance.release_server(path)


class _LiteIteratorNoise(logging.Filter):
    """pymilvus warns at each query iterator that Milvus Lite sent no MVCC
    timestamp: harmless (Lite reads are synchronous), once per gallery at start-up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("failed to get mvccTs")


logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_LiteIteratorNoise())


class MilvusConnection:
    """One client of a Milvus deployment, shared by its galleries' indexes."""

    def __init__(self, settings: MilvusSettings) -> None:
        self.settings = settings
        self._closed = False
        self._lite_path: str | None = None
        uri, options = settings.uri, settings.tls.options() if settings.tls else {}
        if settings.is_lite:
            uri = os.path.abspath(uri)
            if not Path(uri).parent.is_dir():
                raise BackendUnavailable(f"the folder of Milvus Lite's {uri} does not exist")
            Path(uri).mkdir(mode=0o700, exist_ok=True)  # Lite keeps vectors in plain files: owner only
        try:
            self._client: Any = MilvusClient(
                uri=uri, token=settings.token, db_name=settings.db_name, timeout=settings.timeout_s, **options
            )
        except (MilvusException, grpc.RpcError, OSError) as error:
            hint = " (is another process using this .db folder?)" if settings.is_lite else ""
            raise BackendUnavailable(
                f"cannot connect to Milvus at {settings.display_uri}: {_reason(error)}{hint}"
            ) from error
        if settings.is_lite:
            self._lite_path = uri
            with _lite_lock:
                _lite_users[uri] = _lite_users.get(uri, 0) + 1
        log.info("connected to Milvus%s at %s", " Lite" if settings.is_lite else "", settings.display_uri)

    def call(self, action: str, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """A MilvusClient method, with the timeout; its failures raise BackendUnavailable."""
        if self._closed:
            raise BackendUnavailable(f"the Milvus connection to {self.settings.display_uri} is closed")
        try:
            return getattr(self._client, method)(*args, timeout=self.settings.timeout_s, **kwargs)
        except (MilvusException, grpc.RpcError) as error:
            where = self.settings.display_uri
            raise BackendUnavailable(f"Milvus {action} failed at {where}: {_reason(error)}") from error

    def index(self, gallery_id: str, dimension: int, metric: Metric) -> MilvusIndex:
        """The gallery's index; its collection is created if missing.

        SnapshotRejected if an existing collection does not fit the gallery
        (schema, dimension, metric): drop it and reload from the store.
        """
        return MilvusIndex(self, gallery_id, dimension, metric)

    def drop(self, gallery_id: str) -> bool:
        """Drop the gallery's collection; False if there was none."""
        name = collection_name(gallery_id, self.settings.collection_prefix)
        if not self.call("has collection", "has_collection", name):
            return False
        self.call("drop collection", "drop_collection", name)
        log.info("gallery %s: Milvus collection %s dropped", gallery_id, name)
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.close()
        if self._lite_path is not None:
            _release_lite(self._lite_path)

    def __enter__(self) -> MilvusConnection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class MilvusIndex:
    """One gallery's collection: INT64 primary key `id` (template ids), FLOAT_VECTOR `vector`."""

    kind = "milvus"

    def __init__(self, connection: MilvusConnection, gallery_id: str, dimension: int, metric: Metric) -> None:
        self.dimension = dimension
        self.metric = metric
        self.gallery_id = gallery_id
        self._connection = connection
        self._settings = connection.settings
        self.collection = collection_name(gallery_id, self._settings.collection_prefix)
        self._pending = 0  # rows written since the last flush (Milvus Lite only)
        if self._call("has collection", "has_collection", self.collection):
            self._check_collection()
        else:
            self._create()
        # Idempotent; needed after a restart (Milvus Lite reopens collections released).
        self._call("load collection", "load_collection", self.collection)

    def _call(self, action: str, method: str, /, *args: Any, **kwargs: Any) -> Any:
        return self._connection.call(f"{action} (gallery {self.gallery_id})", method, *args, **kwargs)

    def _index_params(self) -> Any:
        build: dict[str, Any] = dict(self._settings.index_params)
        if build:
            # pymilvus sends build parameters as top-level keys, which Milvus Lite ignores: it reads
            # only the legacy "params" JSON key, which a Milvus server also still merges in.
            build["params"] = dict(self._settings.index_params)
        params = self._connection._client.prepare_index_params()
        params.add_index(
            field_name=VECTOR_FIELD,
            index_type=self._settings.index_type,
            metric_type=_METRICS[self.metric],
            params=build,
        )
        return params

    def _create(self) -> None:
        schema = self._connection._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=self.dimension)
        self._call("create collection", "create_collection", self.collection, schema=schema, **_STRONG)
        self._create_index()
        log.info("gallery %s: Milvus collection %s created", self.gallery_id, self.collection)

    def _check_collection(self) -> None:
        """Refuse a collection that does not fit; re-index one whose index type or parameters changed."""
        fields = {
            f["name"]: f for f in self._call("describe", "describe_collection", self.collection)["fields"]
        }
        vector, key = fields.get(VECTOR_FIELD, {}), fields.get(ID_FIELD, {})
        held = int(vector.get("params", {}).get("dim", -1))
        names = self._call("list indexes", "list_indexes", self.collection, field_name=VECTOR_FIELD)
        index = (
            dict(self._call("describe index", "describe_index", self.collection, names[0])) if names else {}
        )
        metric = str(index.get("metric_type", _METRICS[self.metric])).upper()
        if (
            len(fields) != 2
            or key.get("type") != DataType.INT64
            or not key.get("is_primary")
            or vector.get("type") != DataType.FLOAT_VECTOR
            or held != self.dimension
            or metric != _METRICS[self.metric]
        ):
            raise SnapshotRejected(
                f"gallery {self.gallery_id}: Milvus collection {self.collection} does not fit the gallery"
                f" (fields {sorted(fields)}, dimension {held} for {self.dimension}, metric {metric})"
            )
        built = index["params"] if isinstance(index.get("params"), dict) else index
        same_params = all(str(built.get(k, v)) == str(v) for k, v in self._settings.index_params.items())
        if names and str(index.get("index_type", "")).upper() == self._settings.index_type and same_params:
            return
        log.info(
            "gallery %s: re-indexing %s as %s", self.gallery_id, self.collection, self._settings.index_type
        )
        self._call("release", "release_collection", self.collection)  # Milvus drops only released indexes
        if names:
            self._call("drop index", "drop_index", self.collection, names[0])
        self._create_index()

    def _create_index(self) -> None:
        # pymilvus then polls for the build every 0.5 s via AllocTimestamp, which Lite lacks (and
        # logs as an error); Lite builds at once, so only a server is waited for.
        wait = not self._settings.is_lite
        self._call("create index", "create_index", self.collection, self._index_params(), sync=wait)

    def flush(self) -> None:
        """Seal pending writes into segments: fast searches on Lite (a server needs none to see writes)."""
        self._call("flush", "flush", self.collection)
        self._pending = 0

    def compact(self) -> None:
        """Ask Milvus to rewrite segments without deleted rows (erasure); a no-op on Lite."""
        self._call("compact", "compact", self.collection)

    def drop(self) -> None:
        """Drop the collection and every row in it."""
        self._call("drop collection", "drop_collection", self.collection)
        self._pending = 0
        log.info("gallery %s: Milvus collection %s dropped", self.gallery_id, self.collection)

    def close(self) -> None:
        """Flush pending Lite writes; the connection stays open for other galleries."""
        if self._pending:
            self.flush()

    def _wrote(self, rows: int) -> None:
        if self._settings.is_lite:
            self._pending += rows
            if self._pending >= _LITE_FLUSH_ROWS:
                self.flush()

    @property
    def size(self) -> int:
        rows = self._call("count", "query", self.collection, output_fields=["count(*)"], **_STRONG)
        return int(rows[0]["count(*)"])

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        keys = np.asarray(ids, dtype=np.int64).reshape(-1)
        rows = self._matrix(vectors, "vectors")
        if len(rows) != len(keys):
            raise InvalidVector(f"gallery {self.gallery_id}: {len(keys)} ids for {len(rows)} vectors")
        step = max(1, _WRITE_BYTES // (4 * self.dimension))
        for start in range(0, len(keys), step):
            batch = [
                {ID_FIELD: int(i), VECTOR_FIELD: row}
                for i, row in zip(keys[start : start + step], rows[start : start + step], strict=True)
            ]
            self._call("insert", "insert", self.collection, batch)
            self._wrote(len(batch))

    def refill(self, batches: Iterable[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]) -> int:
        """Drop and recreate the collection with these (ids, vectors) batches; returns the rows added."""
        if self._call("has collection", "has_collection", self.collection):
            self.drop()
        self._create()
        self._call("load collection", "load_collection", self.collection)
        added = 0
        for ids, vectors in batches:
            self.add(ids, vectors)
            added += len(ids)
        self.flush()
        return added

    def remove(self, ids: npt.NDArray[np.int64]) -> int:
        """Delete these ids; returns how many were held (Milvus counts the ids sent)."""
        unique = np.unique(np.asarray(ids, dtype=np.int64))
        removed = 0
        for start in range(0, len(unique), _IDS_PER_CALL):
            chunk = unique[start : start + _IDS_PER_CALL]
            held = self._call(
                "query",
                "query",
                self.collection,
                filter=_id_filter(chunk),
                output_fields=[ID_FIELD],
                **_STRONG,
            )
            found = sorted({int(row[ID_FIELD]) for row in held})
            if found:
                self._call("delete", "delete", self.collection, ids=found)
                self._wrote(len(found))
                removed += len(found)
        return removed

    def search(
        self,
        probes: npt.NDArray[np.float32],
        k: int,
        subset: npt.NDArray[np.int64] | None = None,
    ) -> Hits:
        queries = self._matrix(probes, "probes")
        if self.metric is Metric.COSINE:
            queries = normalise_rows(queries)  # Milvus would too; FlatIndex's scores are over unit probes
        q = len(queries)
        scores = np.full((q, k), self.metric.worst_score(), dtype=np.float32)
        found = np.full((q, k), -1, dtype=np.int64)
        if q == 0 or k < 1 or (subset is not None and len(subset) == 0):
            return Hits(scores, found)
        params = dict(self._settings.search_params)
        if "ef" in params:  # HNSW refuses an ef below the number of results asked for
            params["ef"] = max(int(params["ef"]), k)
        request: dict[str, Any] = {
            "limit": k,
            "filter": "" if subset is None else _id_filter(np.unique(np.asarray(subset, dtype=np.int64))),
            "output_fields": [ID_FIELD],
            "search_params": {"metric_type": _METRICS[self.metric], "params": params},
            **_STRONG,
        }
        step = _PROBES_PER_CALL
        if self._settings.is_lite and self._settings.index_type in ("FLAT", "BRUTE_FORCE"):
            step = _LITE_FLAT_PROBES_PER_CALL
        for start in range(0, q, step):
            chunk = list(queries[start : start + step])
            for row, hits in enumerate(
                self._call("search", "search", self.collection, data=chunk, **request)
            ):
                n = len(hits)
                raw = np.fromiter((float(hit["distance"]) for hit in hits), dtype=np.float64, count=n)
                # Milvus reports squared L2 distances and cosine similarities.
                scores[start + row, :n] = np.sqrt(np.maximum(raw, 0.0)) if self.metric is Metric.L2 else raw
                found[start + row, :n] = np.fromiter((int(hit[ID_FIELD]) for hit in hits), np.int64, count=n)
        return Hits(scores, found)

    def iter_contents(
        self, batch_size: int = 4096
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """(ids, vectors) batches in ascending id order (a query iterator walks the primary key)."""
        iterator = self._call(
            "query iterator",
            "query_iterator",
            self.collection,
            batch_size,
            output_fields=[ID_FIELD, VECTOR_FIELD],
        )
        try:
            while True:
                try:
                    rows = iterator.next()
                except (MilvusException, grpc.RpcError) as error:
                    where = f"(gallery {self.gallery_id}) failed at {self._settings.display_uri}"
                    raise BackendUnavailable(f"Milvus query iterator {where}: {_reason(error)}") from error
                if not rows:
                    return
                ids = np.fromiter((int(row[ID_FIELD]) for row in rows), dtype=np.int64, count=len(rows))
                vectors = np.asarray([row[VECTOR_FIELD] for row in rows], dtype=np.float32)
                order = np.argsort(ids, kind="stable")
                yield ids[order], np.ascontiguousarray(vectors[order].reshape(len(rows), self.dimension))
        finally:
            iterator.close()

    def contents(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """All (ids, vectors), ordered by id."""
        ids: list[npt.NDArray[np.int64]] = [np.zeros(0, dtype=np.int64)]
        vectors: list[npt.NDArray[np.float32]] = [np.zeros((0, self.dimension), dtype=np.float32)]
        for batch_ids, batch_vectors in self.iter_contents():
            ids.append(batch_ids)
            vectors.append(batch_vectors)
        all_ids = np.concatenate(ids)
        order = np.argsort(all_ids, kind="stable")
        return all_ids[order], np.ascontiguousarray(np.concatenate(vectors)[order])

    def _matrix(self, vectors: npt.NDArray[np.float32], what: str) -> npt.NDArray[np.float32]:
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.dimension:
            raise InvalidVector(
                f"gallery {self.gallery_id}: {what} must have shape (n, {self.dimension}), got {rows.shape}"
            )
        return rows


def _id_filter(ids: npt.NDArray[np.int64]) -> str:
    return f"{ID_FIELD} in [{','.join(str(int(i)) for i in ids)}]"


def _reason(error: BaseException) -> str:
    if isinstance(error, MilvusException):
        return str(error.message) or type(error).__name__
    code = getattr(error, "code", None)
    return f"gRPC {code().name}" if callable(code) else (str(error) or type(error).__name__)
