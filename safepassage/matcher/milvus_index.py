"""A gallery's index held in Milvus, behind the same interface as FlatIndex.

Milvus (standalone, a cluster, or Milvus Lite) holds each gallery as one
collection of (template id, vector) rows, reached through the shared
`MilvusConnection` (safepassage/matcher/milvus_connection.py: settings, TLS, collection
names). The store stays the source of truth: Milvus holds
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
from collections.abc import Iterable, Iterator
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from pymilvus import DataType
from pymilvus.exceptions import MilvusException

from safepassage.matcher.errors import BackendUnavailable, InvalidVector, SnapshotRejected
from safepassage.matcher.metric import Metric, normalise_rows
from safepassage.matcher.milvus_connection import MilvusConnection, collection_name, failure_reason
from safepassage.matcher.search import Hits

log = logging.getLogger(__name__)

ID_FIELD, VECTOR_FIELD = "id", "vector"
_STRONG = {"consistency_level": "Strong"}
_METRICS = {Metric.L2: "L2", Metric.COSINE: "COSINE"}
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
        params = self._connection.client.prepare_index_params()
        params.add_index(
            field_name=VECTOR_FIELD,
            index_type=self._settings.index_type,
            metric_type=_METRICS[self.metric],
            params=build,
        )
        return params

    def _create(self) -> None:
        schema = self._connection.client.create_schema(auto_id=False, enable_dynamic_field=False)
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
                    raise BackendUnavailable(
                        f"Milvus query iterator {where}: {failure_reason(error)}"
                    ) from error
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
