"""The connection to a Milvus deployment: where it is, how to reach it, and one shared client.

For deployments that outgrow one machine, Milvus (standalone or a cluster)
holds each gallery as one collection (safepassage/matcher/milvus_index.py); Milvus Lite (a
uri ending in ".db": embedded, in-process) runs the same code in tests and on
single machines. `MilvusSettings` says where Milvus is and how galleries are
indexed there (`MilvusTls` for a TLS channel), `collection_name` maps gallery
ids to collection names, and `MilvusConnection` is the one client that all the
galleries' indexes share: every call goes through it, with the settings'
timeout, and its failures raise BackendUnavailable. Closing the last
connection to a Lite folder stops Lite's in-process server, so the folder can
be reopened.

Credentials (a token, or user:password in the uri) are never logged or shown.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import grpc
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from safepassage.matcher.errors import BackendUnavailable
from safepassage.matcher.metric import Metric
from safepassage.matcher.vectors import check_gallery_id

if TYPE_CHECKING:
    from safepassage.matcher.milvus_index import MilvusIndex

log = logging.getLogger(__name__)

ParamValue = int | float | str | bool
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_INDEX_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,31}")


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
    from milvus_lite.server_manager import server_manager_instance

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
                f"cannot connect to Milvus at {settings.display_uri}: {failure_reason(error)}{hint}"
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
            raise BackendUnavailable(f"Milvus {action} failed at {where}: {failure_reason(error)}") from error

    def index(self, gallery_id: str, dimension: int, metric: Metric) -> MilvusIndex:
        """The gallery's index; its collection is created if missing.

        SnapshotRejected if an existing collection does not fit the gallery
        (schema, dimension, metric): drop it and reload from the store.
        """
        from safepassage.matcher.milvus_index import MilvusIndex  # imports this module

        return MilvusIndex(self, gallery_id, dimension, metric)

    @property
    def client(self) -> Any:
        """The MilvusClient, for building schemas and index parameters (local: no call to Milvus)."""
        return self._client

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


def failure_reason(error: BaseException) -> str:
    """A Milvus or gRPC failure in a few words, for BackendUnavailable's message."""
    if isinstance(error, MilvusException):
        return str(error.message) or type(error).__name__
    code = getattr(error, "code", None)
    return f"gRPC {code().name}" if callable(code) else (str(error) or type(error).__name__)
