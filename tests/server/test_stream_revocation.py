"""A stream is authenticated for every message: a certificate revoked, or expired, mid-stream ends it.

A connection (and a stream on it) lives for hours; checking the certificate
only when the stream opened would let a revoked or expired client go on
searching for as long as it keeps the stream open. Each case opens an
IdentifyStream over mutual TLS, gets an answer, then sends another message
after the certificate stopped being valid: UNAUTHENTICATED, logged under the
caller with the message's gallery.
"""

from __future__ import annotations

import datetime
import queue
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.audit import LogEvent
from safepassage.server.identity import Role
from safepassage.server.pki_issuance import IssuedCert
from tests.pki_helpers import RolePki

pytestmark = pytest.mark.server
DIM = 128
GALLERY = "revoke-watch"
STREAM = "MatchingService/IdentifyStream"
KNOWN = np.random.default_rng(83).normal(scale=0.1, size=DIM).astype(np.float32)


def query(request_id: str) -> pb.IdentifyRequest:
    return pb.IdentifyRequest(
        gallery_id=GALLERY,
        probe=pb.Probe(embedding=pb.Embedding(values=KNOWN.tolist())),
        request_id=request_id,
    )


class OpenStream:
    """An IdentifyStream whose messages are sent one at a time, each when the test says."""

    def __init__(self, stub: pb_grpc.MatchingServiceStub) -> None:
        self._outbox: queue.Queue[pb.IdentifyRequest | None] = queue.Queue()
        self._answers: Any = stub.IdentifyStream(self._messages(), timeout=120)

    def _messages(self) -> Iterator[pb.IdentifyRequest]:
        while (message := self._outbox.get()) is not None:
            yield message

    def ask(self, request: pb.IdentifyRequest) -> pb.IdentifyStreamResponse:
        self._outbox.put(request)
        answer: pb.IdentifyStreamResponse = next(self._answers)
        return answer

    def close(self) -> None:
        self._outbox.put(None)


@pytest.fixture(scope="module")
def world(server_factory: Any, clients_for: Any) -> tuple[Any, int]:
    service, port, _ = server_factory()
    clients = clients_for(port)
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=GALLERY, purpose=pb.WATCHLIST))
    clients.admin.matching.InsertTemplate(
        pb.InsertTemplateRequest(
            gallery_id=GALLERY,
            reference_id="known",
            template=pb.Probe(embedding=pb.Embedding(values=KNOWN.tolist())),
        )
    )
    return service, port


def refused_entries(service: Any, since: int, actor: str) -> list[LogEvent]:
    log = service.transparency_log
    events = [entry.event() for entry in log.entries(since, log.size())]
    return [
        e for e in events if e.operation == STREAM and e.actor == actor and e.outcome == "UNAUTHENTICATED"
    ]


def assert_refused_mid_stream(stream: OpenStream, request_id: str) -> str:
    with pytest.raises(grpc.RpcError) as info:
        stream.ask(query(request_id))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value.details()
    return info.value.details() or ""


def test_a_certificate_revoked_mid_stream_stops_the_next_message(
    world: tuple[Any, int], role_pki: RolePki
) -> None:
    service, port = world
    issued = role_pki.pki.issue_client("officer-revoked-mid", Role.OFFICER)
    with role_pki.channel_with(port, issued) as channel:
        stream = OpenStream(pb_grpc.MatchingServiceStub(channel))
        try:
            first = stream.ask(query("before-revocation"))
            assert first.WhichOneof("outcome") == "result" and first.result.decision == pb.MATCH
            mark = service.transparency_log.size()
            role_pki.pki.revoke("officer-revoked-mid")
            says = assert_refused_mid_stream(stream, "after-revocation")
        finally:
            stream.close()
    assert "revoked" in says
    (entry,) = refused_entries(service, mark, "officer:officer-revoked-mid")
    assert entry.gallery_id == GALLERY


def _short_lived(role_pki: RolePki, seconds: int) -> IssuedCert:
    now = datetime.datetime.now(datetime.UTC)
    return role_pki.pki.issue_client(
        "officer-expiring-mid",
        Role.OFFICER,
        replace=True,
        valid_from=now - datetime.timedelta(minutes=1),
        valid_until=now + datetime.timedelta(seconds=seconds),
    )


def test_a_certificate_that_expires_mid_stream_stops_the_next_message(
    world: tuple[Any, int], role_pki: RolePki
) -> None:
    service, port = world
    # The first answer must come while the certificate is valid; on a machine too slow for that,
    # try again with a longer life rather than depend on its speed.
    for seconds in (4, 15, 60, 240):
        issued = _short_lived(role_pki, seconds)
        with role_pki.channel_with(port, issued) as channel:
            stream = OpenStream(pb_grpc.MatchingServiceStub(channel))
            try:
                try:
                    first = stream.ask(query(f"while-valid-{seconds}"))
                except grpc.RpcError:
                    if datetime.datetime.now(datetime.UTC) < issued.not_after:
                        raise  # refused while still valid: a real failure
                    continue
                assert first.WhichOneof("outcome") == "result"
                # Past the certificate's end, on the same stream and connection.
                while datetime.datetime.now(datetime.UTC) <= issued.not_after + datetime.timedelta(seconds=1):
                    time.sleep(0.2)
                mark = service.transparency_log.size()
                says = assert_refused_mid_stream(stream, "after-expiry")
            finally:
                stream.close()
        assert "is valid only from" in says
        (entry,) = refused_entries(service, mark, "officer:officer-expiring-mid")
        assert entry.gallery_id == GALLERY
        return
    raise AssertionError("the first answer never came while the certificate was valid")
