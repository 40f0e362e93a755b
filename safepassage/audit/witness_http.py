"""The witness over HTTP: its server (``safepassage audit witness serve``) and the log's client.

After C2SP tlog-witness, in JSON::

    POST /add-tree-head
        {"log_key_id": HEX, "old_size": N, "consistency_proof": [B64, ...], "tree_head": {...}}
        200 {"cosignature": {...}}
        409 {"error": ..., "tree_size": N}   old_size is not the witness's size: prove from N, retry
        404 {"error": ...}                   the witness does not witness this log
        422 {"error": ...}                   not the log's signature, a rollback, or a fork
        400 {"error": ...}                   a malformed request
    GET /tree-head/<log key id>
        200 {"witnessed": {"tree_head": {...}, "cosignature": {...}} or null}
        404 {"error": ...}

Nothing sent is secret and every answer is signed, so plain HTTP on a
private network (or through an SSH tunnel) is enough; someone in the middle
can delay publication but not forge a cosignature or make the witness
accept a rollback. Messages hold sizes and key ids, never entries.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from safepassage.audit.cosignature import Cosignature, verify_cosignature
from safepassage.audit.errors import (
    SignatureError,
    UnknownLog,
    WitnessConflict,
    WitnessRefused,
    WitnessUnavailable,
)
from safepassage.audit.keys import key_id
from safepassage.audit.merkle import HASH_SIZE
from safepassage.audit.tree_head import SignedTreeHead, verify_tree_head
from safepassage.audit.witness import Witness, Witnessed
from safepassage.core.signing import VerifyingKey

__all__ = ["WitnessClient", "WitnessServer"]

_log = logging.getLogger(__name__)

ADD_PATH = "/add-tree-head"
LATEST_PATH = "/tree-head/"
_MAX_BODY = 64 * 1024
_MAX_PROOF = 128  # a consistency proof of a 2^64-leaf tree has under 2 x 64 hashes


def _parse_add(body: bytes) -> tuple[str, int, list[bytes], SignedTreeHead]:
    obj = json.loads(body)
    if not isinstance(obj, dict) or set(obj) != {"log_key_id", "old_size", "consistency_proof", "tree_head"}:
        raise ValueError("expected log_key_id, old_size, consistency_proof and tree_head")
    log_key_id, old_size, proof = obj["log_key_id"], obj["old_size"], obj["consistency_proof"]
    if not isinstance(log_key_id, str):
        raise ValueError("log_key_id must be a string")
    if isinstance(old_size, bool) or not isinstance(old_size, int) or old_size < 0:
        raise ValueError("old_size must be a non-negative integer")
    if not isinstance(proof, list) or len(proof) > _MAX_PROOF:
        raise ValueError(f"consistency_proof must be a list of at most {_MAX_PROOF} hashes")
    hashes = []
    for element in proof:
        if not isinstance(element, str):
            raise ValueError("consistency_proof holds base64 strings")
        try:
            hashed = base64.b64decode(element, validate=True)
        except binascii.Error:
            raise ValueError("consistency_proof holds base64 strings") from None
        if len(hashed) != HASH_SIZE:
            raise ValueError(f"each consistency_proof hash is {HASH_SIZE} bytes")
        hashes.append(hashed)
    return log_key_id, old_size, hashes, SignedTreeHead.from_json(obj["tree_head"])


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "safepassage-witness/1"

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body, sort_keys=True).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, status: HTTPStatus, error: Exception, **extra: object) -> None:
        self._reply(status, {"error": str(error), **extra})

    def do_GET(self) -> None:
        if not self.path.startswith(LATEST_PATH):
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no {self.path}"})
            return
        try:
            seen = self.server.witness.latest(self.path[len(LATEST_PATH) :])
        except UnknownLog as error:
            self._refuse(HTTPStatus.NOT_FOUND, error)
            return
        self._reply(HTTPStatus.OK, {"witnessed": seen.to_json() if seen else None})

    def do_POST(self) -> None:
        if self.path != ADD_PATH:
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length is required"})
            return
        if not 0 <= length <= _MAX_BODY:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"at most {_MAX_BODY} bytes"})
            return
        try:
            log_key_id, old_size, proof, head = _parse_add(self.rfile.read(length))
        except ValueError as error:  # json.JSONDecodeError is one
            self._refuse(HTTPStatus.BAD_REQUEST, error)
            return
        try:
            cosignature = self.server.witness.add(log_key_id, old_size, proof, head)
        except WitnessConflict as error:
            self._refuse(HTTPStatus.CONFLICT, error, tree_size=error.tree_size)
        except UnknownLog as error:
            self._refuse(HTTPStatus.NOT_FOUND, error)
        except WitnessRefused as error:
            _log.warning("refused a tree head of log %s: %s", log_key_id, error)
            self._refuse(HTTPStatus.UNPROCESSABLE_ENTITY, error)
        else:
            self._reply(HTTPStatus.OK, {"cosignature": cosignature.to_json()})

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], witness: Witness) -> None:
        self.witness = witness
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class WitnessServer:
    """A witness answering on ``http://host:port`` (port 0: a free one) until :meth:`shutdown`."""

    def __init__(self, witness: Witness, host: str = "127.0.0.1", port: int = 0) -> None:
        self._http = _Server((host, port), witness)
        self._host = host

    @property
    def url(self) -> str:
        shown = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{shown}:{self._http.server_port}"

    def serve_forever(self) -> None:
        self._http.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop serving (from another thread) and close the socket."""
        self._http.shutdown()
        self._http.server_close()


class WitnessClient:
    """The log's side: ask a witness what it saw, and send it new heads. Checks every answer."""

    def __init__(self, url: str, witness_key: VerifyingKey, *, timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("a witness URL starts with http:// or https://")
        self._url = url.rstrip("/")
        self._key = witness_key
        self._timeout = timeout_s

    @property
    def url(self) -> str:
        return self._url

    @property
    def key_id(self) -> str:
        return key_id(self._key)

    def _call(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            self._url + path, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:
                status, raw = answer.status, answer.read(_MAX_BODY)
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read(_MAX_BODY)
        except (urllib.error.URLError, OSError) as error:
            raise WitnessUnavailable(f"cannot reach the witness at {self._url}: {error}") from None
        if status >= 500:
            raise WitnessUnavailable(f"the witness at {self._url} failed ({status})")
        try:
            obj = json.loads(raw)
        except ValueError:
            raise WitnessUnavailable(f"the witness at {self._url} answered {status} without JSON") from None
        if not isinstance(obj, dict):
            raise WitnessUnavailable(f"the witness at {self._url} answered {status} without a JSON object")
        return status, obj

    def _refused(self, status: int, obj: dict[str, Any]) -> Exception:
        message = f"the witness at {self._url} refused: {obj.get('error', status)}"
        if status == HTTPStatus.CONFLICT and isinstance(obj.get("tree_size"), int):
            return WitnessConflict(message, tree_size=obj["tree_size"])
        if status == HTTPStatus.NOT_FOUND:
            return UnknownLog(message)
        return WitnessRefused(message)

    def _check(self, cosignature: Cosignature, head: SignedTreeHead, log_key_id: str) -> None:
        try:
            if not cosignature.covers(head):
                raise SignatureError("it cosigns another tree")
            verify_cosignature(cosignature, self._key, log_key_id)
        except SignatureError as error:
            raise WitnessRefused(
                f"the witness at {self._url} answered with a cosignature that is not the configured"
                f" witness's ({self.key_id}) on this head: {error}"
            ) from None

    def latest(self, log_key: VerifyingKey) -> Witnessed | None:
        """The newest head the witness cosigned for this log, checked; None before the first."""
        log_key_id = key_id(log_key)
        status, obj = self._call(LATEST_PATH + log_key_id)
        if status != HTTPStatus.OK:
            raise self._refused(status, obj)
        if obj.get("witnessed") is None:
            return None
        try:
            seen = Witnessed.from_json(obj["witnessed"])
            verify_tree_head(seen.tree_head, log_key)
        except (ValueError, SignatureError) as error:
            raise WitnessRefused(
                f"the witness at {self._url} answered with no head of this log: {error}"
            ) from None
        self._check(seen.cosignature, seen.tree_head, log_key_id)
        return seen

    def add(
        self, log_key_id: str, old_size: int, proof: Sequence[bytes], head: SignedTreeHead
    ) -> Cosignature:
        """Send ``head`` with the proof from ``old_size``; the witness's checked cosignature.

        Raises WitnessConflict (retry from its ``tree_size``), WitnessRefused,
        UnknownLog or WitnessUnavailable.
        """
        body = {
            "log_key_id": log_key_id,
            "old_size": old_size,
            "consistency_proof": [base64.b64encode(element).decode("ascii") for element in proof],
            "tree_head": head.to_json(),
        }
        status, obj = self._call(ADD_PATH, body)
        if status != HTTPStatus.OK:
            raise self._refused(status, obj)
        try:
            cosignature = Cosignature.from_json(obj.get("cosignature"))
        except ValueError as error:
            raise WitnessUnavailable(f"the witness at {self._url} answered no cosignature: {error}") from None
        self._check(cosignature, head, log_key_id)
        return cosignature
