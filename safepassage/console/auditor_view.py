"""The auditor's view of the transparency log: browsed on the server, checked in the browser.

GET /auditor/log                     the log's entries (hashes, counts and ids, as stored), filtered by
                                     time, operation, actor and outcome, a page at a time; the newest
                                     signed tree heads; a link to the fishing alerts (admin_oversight.py)
GET /auditor/verify/                 the page whose own script (static/auditor_verify.js) checks the log
GET /auditor/verify/heads.json       the log's public key and signed tree heads (ListTreeHeads)
GET /auditor/verify/entries-N-S.json entries from S with their inclusion proofs in the tree of size N
GET /auditor/verify/consistency-A-B.json  the proof that the tree of size B extends that of size A

The JSON files are the service's answers passed through, base64 for bytes: the browser believes none
of them until its own code has checked them (signatures, proofs, the heads it saw before), so they
work the same from a static copy served by anyone (tests/console/test_console_auditor.py proves it
with this server stopped). Every call is the person's own (ListTreeHeads, ListLogEntries,
GetConsistencyProof: administrators and auditors, by the matrix).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from safepassage.api.v1 import administration_pb2 as adpb
from safepassage.api.v1 import administration_pb2_grpc as adpb_grpc
from safepassage.console.gateway import ServiceGateway
from safepassage.console.pages import PERSON, Renderer, identify, peer_certificate
from safepassage.console.refusals import N_, RequestRefused

__all__ = ["VERIFY_MESSAGES", "AuditorPages", "EntryView", "HeadView"]

SCRIPT = Path(__file__).resolve().parent / "static" / "auditor_verify.js"
PAGE_SIZE = 50
HEADS_SHOWN = 20
_MAX_HEADS = 1000

# What the page's script says, rendered into the page so that it goes through the catalogue too.
VERIFY_MESSAGES: Mapping[str, str] = {
    "key-pinned": N_("The log's key is the one pinned in this page's address."),
    "key-not-pinned": N_("The log's key is not the one pinned in this page's address ({pinned})."),
    "key-first-use": N_(
        "This browser had not seen another key for this log. Compare the key id with the one the operator"
        " publishes, and pin it by adding #key= and the id to this page's address."
    ),
    "key-changed": N_("The log's key changed: this browser saw the key {seen} before."),
    "head-not-signed": N_("The tree head of size {size} is not signed by the log's key."),
    "heads-signed": N_("{count} tree heads carry a valid signature of the log's key."),
    "log-went-back": N_("The log went back: a tree head of size {second} follows one of size {first}."),
    "heads-fork": N_(
        "The tree of size {second} does not extend the tree of size {first}: the log was forked or rewritten."
    ),
    "heads-consistent": N_("Each of {count} tree heads extends the one before it."),
    "no-heads": N_("The log has no signed tree head yet."),
    "log-shorter": N_(
        "The log is shorter than one this browser saw before: size {size}, where it saw size {seen}."
    ),
    "log-forked": N_(
        "The log of size {size} does not extend the log of size {seen} this browser saw before:"
        " it was forked or rewritten."
    ),
    "extends-seen": N_("The log extends the one of size {seen} this browser saw before."),
    "entry-not-included": N_(
        "Entry {index} is not in the signed tree of size {size}: it was rewritten, or its proof is false."
    ),
    "entries-included": N_("{count} entries shown are included in the signed tree of size {size}."),
    "entry-ok": N_("included"),
    "entry-bad": N_("NOT included"),
    "entry-check-ok": N_("Entry {index} is included in the signed tree of size {size}."),
    "entry-check-failed": N_("Entry {index} could not be shown to be in the signed tree of size {size}."),
    "incomplete": N_("The check could not finish: a file of the log is missing or malformed."),
    "export-too-short": N_("A tree head signs size {size}, but the export holds only {entries} entries."),
    "export-root": N_("The export's entries do not reproduce the signed root of tree size {size}."),
    "export-unreadable": N_(
        "The export could not be read: pick its entries.jsonl, tree_heads.jsonl and log_public_key.pem."
    ),
    "export-ok": N_(
        "Verified in this browser: {heads} signed tree heads, each root recomputed from the export's"
        " {entries} entries."
    ),
    "verdict-ok": N_("Verified in this browser: {heads} signed tree heads and {entries} entries."),
    "verdict-failed": N_("The log failed {count} checks in this browser: see the list below."),
}


@dataclass(frozen=True)
class EntryView:
    index: int
    at: str
    actor: str
    operation: str
    gallery_id: str
    outcome: str
    details: str  # key=value pairs: digests, counts, times and tokens, as the log stores them


@dataclass(frozen=True)
class HeadView:
    tree_size: int
    at: str
    root_hex: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _moment_ms(milliseconds: int) -> str:
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _day_ms(text: str, what: str) -> int:
    """Milliseconds at the start of the UTC day written YYYY-MM-DD (0 for no limit)."""
    if not text:
        return 0
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise RequestRefused(f"{what} is not a date (YYYY-MM-DD)") from None
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp() * 1000)


def _entry_view(entry: adpb.LogEntry) -> EntryView:
    try:
        event: dict[str, Any] = json.loads(entry.leaf_data)
    except ValueError:
        event = {}
    details = event.get("details") if isinstance(event.get("details"), dict) else {}
    assert isinstance(details, dict)
    timestamp = event.get("timestamp")
    return EntryView(
        index=entry.index,
        at=_moment_ms(timestamp) if isinstance(timestamp, int) else "",
        actor=str(event.get("actor", "")),
        operation=str(event.get("operation", "")),
        gallery_id=str(event.get("gallery_id", "")),
        outcome=str(event.get("outcome", "")),
        details=" ".join(f"{key}={value}" for key, value in details.items()),
    )


def _number(request: web.Request, name: str) -> int:
    return int(request.match_info[name])


class AuditorPages:
    def __init__(self, gateway: ServiceGateway, renderer: Renderer) -> None:
        self._gateway = gateway
        self._renderer = renderer
        self._administration = adpb_grpc.AdministrationServiceStub(gateway.channel)
        self._script = SCRIPT.read_bytes()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/auditor/log", self.browse),
            web.get("/auditor/verify/", self.verify_page),
            web.get("/static/auditor_verify.js", self.script),
            web.get("/auditor/verify/heads.json", self.heads),
            web.get(r"/auditor/verify/entries-{size:\d{1,19}}-{start:\d{1,19}}.json", self.entries),
            web.get(r"/auditor/verify/consistency-{first:\d{1,19}}-{second:\d{1,19}}.json", self.consistency),
        ]

    async def script(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._script, content_type="text/javascript", charset="utf-8")

    async def _person(self, request: web.Request, page: str) -> bytes:
        certificate = peer_certificate(request)
        await identify(request, self._gateway, certificate, page)
        return certificate

    def _call(self, method: Any, message: Any, certificate: bytes) -> Any:
        return asyncio.to_thread(self._gateway.call, method, message, certificate)

    async def browse(self, request: web.Request) -> web.StreamResponse:
        certificate = await self._person(request, "auditor_log")
        query = request.query
        filters = {name: query.get(name, "").strip()[:128] for name in ("operation", "actor", "outcome")}
        since, until = query.get("since", "").strip(), query.get("until", "").strip()
        try:
            start = max(0, int(query.get("start", "0") or "0"))
        except ValueError:
            raise RequestRefused("start is not a number") from None
        entries = await self._call(
            self._administration.ListLogEntries,
            adpb.ListLogEntriesRequest(
                start=start,
                count=PAGE_SIZE,
                since_ms=_day_ms(since, "since"),
                until_ms=_day_ms(until, "until"),
                operation=filters["operation"],
                actor=filters["actor"],
                outcome=filters["outcome"],
            ),
            certificate,
        )
        heads = await self._heads(certificate, HEADS_SHOWN)
        later = dict(filters, since=since, until=until, start=str(entries.next_start))
        return self._renderer.page(
            "auditor_log.html",
            request[PERSON],
            current="auditor_log",
            entries=[_entry_view(entry) for entry in entries.entries],
            tree_size=entries.tree_size,
            next_query=(
                urlencode({k: v for k, v in later.items() if v})
                if entries.next_start < entries.tree_size
                else ""
            ),
            filters=filters,
            since=since,
            until=until,
            heads=[
                HeadView(h.tree_size, _moment_ms(h.timestamp), h.sha256_root_hash.hex())
                for h in reversed(heads.tree_heads)
            ],
            head_total=heads.total,
        )

    async def _heads(self, certificate: bytes, newest: int) -> adpb.ListTreeHeadsResponse:
        """The newest `newest` heads (oldest first): a first call learns how many there are."""
        first: adpb.ListTreeHeadsResponse = await self._call(
            self._administration.ListTreeHeads, adpb.ListTreeHeadsRequest(count=newest), certificate
        )
        if first.total <= newest:
            return first
        answer: adpb.ListTreeHeadsResponse = await self._call(
            self._administration.ListTreeHeads,
            adpb.ListTreeHeadsRequest(start=first.total - newest, count=newest),
            certificate,
        )
        return answer

    async def verify_page(self, request: web.Request) -> web.StreamResponse:
        await self._person(request, "auditor_verify")
        return self._renderer.page(
            "auditor_verify.html", request[PERSON], current="auditor_verify", messages=VERIFY_MESSAGES
        )

    async def heads(self, request: web.Request) -> web.StreamResponse:
        certificate = await self._person(request, "auditor_verify")
        answer = await self._heads(certificate, _MAX_HEADS)
        return web.json_response(
            {
                "log_public_key": _b64(answer.log_public_key),
                "total": answer.total,
                "tree_heads": [
                    {
                        "version": head.version,
                        "tree_size": head.tree_size,
                        "timestamp": head.timestamp,
                        "sha256_root_hash": _b64(head.sha256_root_hash),
                        "tree_head_signature": _b64(head.signature),
                    }
                    for head in answer.tree_heads
                ],
            }
        )

    async def entries(self, request: web.Request) -> web.StreamResponse:
        certificate = await self._person(request, "auditor_verify")
        size, start = _number(request, "size"), _number(request, "start")
        if not size:
            raise RequestRefused("a tree size of 0 holds no entry")
        answer = await self._call(
            self._administration.ListLogEntries,
            adpb.ListLogEntriesRequest(tree_size=size, start=start, count=PAGE_SIZE),
            certificate,
        )
        return web.json_response(
            {
                "tree_size": answer.tree_size,
                "next_start": answer.next_start,
                "entries": [
                    {
                        "index": entry.index,
                        "leaf_data": _b64(entry.leaf_data),
                        "inclusion_proof": [_b64(step) for step in entry.inclusion_proof],
                    }
                    for entry in answer.entries
                ],
            }
        )

    async def consistency(self, request: web.Request) -> web.StreamResponse:
        certificate = await self._person(request, "auditor_verify")
        answer = await self._call(
            self._administration.GetConsistencyProof,
            adpb.GetConsistencyProofRequest(
                first=_number(request, "first"), second=_number(request, "second")
            ),
            certificate,
        )
        return web.json_response({"proof": [_b64(step) for step in answer.proof]})
