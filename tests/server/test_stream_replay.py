"""IdentifyStream is idempotent per (client, request_id): a replayed query is answered once.

Edge clients replay their offline queue after a reconnection or a crash; the
server gives the kept answer again (replayed = true) with no second search and
no second kept CCTV probe, across streams and across a restart."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from safepassage import store
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.audit import LogEvent, TransparencyLog
from safepassage.server.cctv_authorisation import METADATA_KEY, sign
from safepassage.server.identity import Role
from safepassage.server.pseudonyms import LogPseudonyms
from tests.pki_helpers import RolePki

pytestmark = pytest.mark.server
DIM = 128
STREAM = "MatchingService/IdentifyStream"
RNG = np.random.default_rng(47)
WANTED = RNG.normal(scale=0.1, size=(4, DIM)).astype(np.float32)


def query(vector: np.ndarray, request_id: str, gallery: str = "watch") -> pb.IdentifyRequest:
    return pb.IdentifyRequest(
        gallery_id=gallery,
        probe=pb.Probe(embedding=pb.Embedding(values=vector.tolist())),
        request_id=request_id,
    )


def stream(
    matching: pb_grpc.MatchingServiceStub, requests: list[pb.IdentifyRequest], token: str | None = None
) -> list[pb.IdentifyStreamResponse]:
    metadata: tuple[tuple[str, str | bytes], ...] = ((METADATA_KEY, token),) if token else ()
    return list(matching.IdentifyStream(iter(requests), metadata=metadata, timeout=30))


def cctv_token(role_pki: RolePki) -> str:
    admin = role_pki.clients[Role.ADMIN]
    return sign(
        gallery_id="watch",
        cameras=["cam-1"],
        legal_basis="Order 2026/200 of the border court",
        valid_for_s=3600,
        admin_cert=x509.load_pem_x509_certificate(admin.cert_pem),
        admin_key=load_pem_private_key(admin.key_pem, None),  # type: ignore[arg-type]
    )


def pseudonyms(service: Any) -> LogPseudonyms:
    """The server's log pseudonyms, from its key file (as its operator would compute them)."""
    return LogPseudonyms.from_key_file(service.config.template_key_path)


def stream_entries(service: Any, request_id: str) -> list[Any]:
    """The transparency-log events of identify-stream answers to one request id (found by its pseudonym)."""
    log = service.transparency_log
    events = [entry.event() for entry in log.entries(0, log.size())]
    named = pseudonyms(service).request_id(request_id)
    return [e for e in events if e.operation == STREAM and e.details.get("request_id_hmac_sha256") == named]


def searches(service: Any, request_id: str) -> int:
    """Answers the log shows as new searches (not replays) for one request id."""
    return sum("replayed" not in e.details for e in stream_entries(service, request_id))


def without_replayed(answer: pb.IdentifyStreamResponse) -> pb.IdentifyStreamResponse:
    copy = pb.IdentifyStreamResponse()
    copy.CopyFrom(answer)
    copy.replayed = False
    return copy


def prepare(clients: Any) -> None:
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="watch", purpose=pb.WATCHLIST))
    for i, vector in enumerate(WANTED):
        clients.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id="watch",
                reference_id=f"w{i}",
                template=pb.Probe(embedding=pb.Embedding(values=vector.tolist())),
            )
        )


@pytest.fixture(scope="module")
def replay(server_factory, clients_for):  # type: ignore[no-untyped-def]
    service, port, _ = server_factory()
    clients = clients_for(port)
    prepare(clients)
    return service, clients


def test_a_query_replayed_in_one_stream_and_on_another_is_answered_once(replay) -> None:  # type: ignore[no-untyped-def]
    service, clients = replay
    request_id = str(uuid.uuid4())
    first, again = stream(clients.officer.matching, [query(WANTED[0], request_id)] * 2)
    assert first.WhichOneof("outcome") == "result" and not first.replayed
    assert first.result.faces[0].candidates[0].reference_id == "w0"
    assert again.replayed and without_replayed(again) == first
    (later,) = stream(clients.officer.matching, [query(WANTED[0], request_id)])
    assert later.replayed and without_replayed(later) == first
    entries = stream_entries(service, request_id)
    assert len(entries) == 3 and searches(service, request_id) == 1
    assert [e.details.get("replayed") for e in entries] == [None, "true", "true"]
    assert all(e.outcome == "MATCH" for e in entries)


def test_without_a_request_id_every_query_is_searched(replay) -> None:  # type: ignore[no-untyped-def]
    _, clients = replay
    answers = stream(clients.officer.matching, [query(WANTED[1], "")] * 2)
    assert [a.WhichOneof("outcome") for a in answers] == ["result", "result"]
    assert not any(a.replayed for a in answers)


def test_a_cctv_hit_replayed_keeps_no_second_probe(replay, role_pki: RolePki) -> None:  # type: ignore[no-untyped-def]
    service, clients = replay
    camera = clients.as_role(Role.CCTV_EDGE).matching
    token = cctv_token(role_pki)
    request_id = str(uuid.uuid4())
    kept_before = service.kept_probes.count()
    (hit,) = stream(camera, [query(WANTED[2] + 0.001, request_id)], token)
    assert hit.result.decision == pb.MATCH and hit.probe_id > 0 and not hit.replayed
    # The edge crashed before it saw the answer: it replays its queue on a new stream.
    (replayed,) = stream(camera, [query(WANTED[2] + 0.001, request_id)], token)
    assert replayed.replayed and replayed.probe_id == hit.probe_id
    assert without_replayed(replayed) == hit
    assert service.kept_probes.count() == kept_before + 1
    assert searches(service, request_id) == 1
    probe = pseudonyms(service).probe(hit.probe_id)
    assert [e.details.get("probe_hmac_sha256") for e in stream_entries(service, request_id)] == [probe] * 2


def test_clients_are_independent(replay, role_pki: RolePki) -> None:  # type: ignore[no-untyped-def]
    service, clients = replay
    other = role_pki.pki.issue_client("officer-replay-2", Role.OFFICER)
    channel = role_pki.channel_with(clients.port, other)
    try:
        second = pb_grpc.MatchingServiceStub(channel)
        request_id = str(uuid.uuid4())
        (mine,) = stream(clients.officer.matching, [query(WANTED[0], request_id)])
        (theirs,) = stream(second, [query(WANTED[3], request_id)])
        assert not theirs.replayed and theirs.result.faces[0].candidates[0].reference_id == "w3"
        (same_query,) = stream(second, [query(WANTED[0], request_id)])
        assert not mine.replayed and mine.result.faces[0].candidates[0].reference_id == "w0"
        # Officer 2's id now names its latest query; each client's own replay is its own answer.
        (replayed,) = stream(clients.officer.matching, [query(WANTED[0], request_id)])
        assert replayed.replayed and without_replayed(replayed) == mine
    finally:
        channel.close()
    assert not same_query.replayed
    assert searches(service, request_id) == 3


def test_the_same_id_with_another_query_is_searched_afresh(replay) -> None:  # type: ignore[no-untyped-def]
    """A client reusing an id must not be handed another query's answer."""
    _, clients = replay
    request_id = str(uuid.uuid4())
    (first,) = stream(clients.officer.matching, [query(WANTED[0], request_id)])
    (other,) = stream(clients.officer.matching, [query(WANTED[1], request_id)])
    assert not other.replayed and other.result.faces[0].candidates[0].reference_id == "w1"
    assert first.result.faces[0].candidates[0].reference_id == "w0"


def test_a_bad_request_id_is_refused_in_band_and_the_stream_goes_on(replay) -> None:  # type: ignore[no-untyped-def]
    service, clients = replay
    good = str(uuid.uuid4())
    bad_ids = ["has space", "x" * 129, "semi;colon", "slash/ed", "caf\u00e9"]
    answers = stream(
        clients.officer.matching, [query(WANTED[0], b) for b in bad_ids] + [query(WANTED[0], good)]
    )
    for answer, bad in zip(answers[:-1], bad_ids, strict=True):
        assert answer.request_id == bad and answer.WhichOneof("outcome") == "error"
        assert answer.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "request_id" in answer.error.message
    assert answers[-1].WhichOneof("outcome") == "result" and not answers[-1].replayed
    assert searches(service, good) == 1
    log = service.transparency_log
    refused = [
        e.event()
        for e in log.entries(0, log.size())
        if e.event().operation == STREAM and e.event().outcome == "INVALID_ARGUMENT"
    ]
    assert refused and not any(key.startswith("request_id") for e in refused for key in e.details)


def test_request_ids_enter_the_log_only_as_keyed_pseudonyms(replay) -> None:  # type: ignore[no-untyped-def]
    """The client chose the text (it could be a name or a case number): the log holds an HMAC under the
    server's key, which still counts each id's answers and replays, and never the text or its plain hash."""
    service, clients = replay
    for request_id in ("maria-lopez-case-4471", "MixedCase-" + uuid.uuid4().hex, "y" * 100):
        answers = stream(clients.officer.matching, [query(WANTED[0], request_id)] * 2)
        assert [a.replayed for a in answers] == [False, True]
        assert [e.details.get("replayed") for e in stream_entries(service, request_id)] == [None, "true"]
        log = service.transparency_log
        leaves = b"".join(entry.data for entry in log.entries(0, log.size()))
        assert request_id.encode() not in leaves
        assert hashlib.sha256(request_id.encode()).hexdigest().encode() not in leaves


def test_errors_are_not_kept(replay) -> None:  # type: ignore[no-untyped-def]
    """A query that failed is searched again when retried: the cause may have been fixed meanwhile."""
    service, clients = replay
    request_id = str(uuid.uuid4())
    gallery = "late-" + uuid.uuid4().hex[:8]
    kept = service.stream_replies.count()
    (failed,) = stream(clients.officer.matching, [query(WANTED[0], request_id, gallery)])
    assert failed.error.code == grpc.StatusCode.NOT_FOUND.value[0] and not failed.replayed
    assert service.stream_replies.count() == kept
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=gallery, purpose=pb.WATCHLIST))
    clients.admin.matching.InsertTemplate(
        pb.InsertTemplateRequest(gallery_id=gallery, reference_id="l0", template=query(WANTED[0], "").probe)
    )
    (retried,) = stream(clients.officer.matching, [query(WANTED[0], request_id, gallery)])
    assert retried.WhichOneof("outcome") == "result" and not retried.replayed
    (replayed,) = stream(clients.officer.matching, [query(WANTED[0], request_id, gallery)])
    assert replayed.replayed and without_replayed(replayed) == retried
    assert searches(service, request_id) == 2  # the failed one and the retry; outcomes differ
    assert [e.outcome for e in stream_entries(service, request_id)] == ["NOT_FOUND", "MATCH", "MATCH"]


def test_a_duplicate_in_flight_on_another_stream_is_aborted(replay, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    service, clients = replay
    request_id = str(uuid.uuid4())
    reading, release = threading.Event(), threading.Event()
    original = store.ReplyLedger.get

    def held(self: store.ReplyLedger, client_id: str, key: str) -> store.StoredReply | None:
        if key == request_id and not release.is_set():
            reading.set()
            release.wait(10)
        return original(self, client_id, key)

    monkeypatch.setattr(store.ReplyLedger, "get", held)
    first: list[pb.IdentifyStreamResponse] = []
    worker = threading.Thread(
        target=lambda: first.extend(stream(clients.officer.matching, [query(WANTED[1], request_id)]))
    )
    worker.start()
    try:
        assert reading.wait(10), "the first stream never reached the ledger"
        (duplicate,) = stream(clients.officer.matching, [query(WANTED[1], request_id)])
    finally:
        release.set()
        worker.join(10)
    assert duplicate.WhichOneof("outcome") == "error" and not duplicate.replayed
    assert duplicate.error.code == grpc.StatusCode.ABORTED.value[0]
    assert duplicate.error.message == f"request {request_id} is being answered on another stream; retry"
    assert first[0].WhichOneof("outcome") == "result" and not first[0].replayed
    # Retried once the first answer is kept: the same answer, searched once in all.
    (retried,) = stream(clients.officer.matching, [query(WANTED[1], request_id)])
    assert retried.replayed and without_replayed(retried) == first[0]
    assert searches(service, request_id) == 2  # the answer, and the ABORTED refusal
    assert [e.outcome for e in stream_entries(service, request_id)] == ["ABORTED", "MATCH", "MATCH"]


def test_an_answer_whose_search_was_not_logged_is_not_kept(replay, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The ledger keeps an answer only once its search is in the transparency log: a failure (or a
    crash) between the two costs a second, logged search, never a search the log does not show."""
    service, clients = replay
    request_id = str(uuid.uuid4())
    named = pseudonyms(service).request_id(request_id)
    original = TransparencyLog.append

    def failing(self: TransparencyLog, event: LogEvent) -> int:
        if event.details.get("request_id_hmac_sha256") == named:
            raise OSError("disk I/O error")
        return original(self, event)

    kept = service.stream_replies.count()
    monkeypatch.setattr(TransparencyLog, "append", failing)
    with pytest.raises(grpc.RpcError):
        stream(clients.officer.matching, [query(WANTED[2], request_id)])
    monkeypatch.undo()
    assert service.stream_replies.count() == kept  # searched, not logged: not kept either
    (retried,) = stream(clients.officer.matching, [query(WANTED[2], request_id)])
    assert retried.WhichOneof("outcome") == "result" and not retried.replayed
    assert searches(service, request_id) == 1  # the log shows the one search it knows of
    (replayed,) = stream(clients.officer.matching, [query(WANTED[2], request_id)])
    assert replayed.replayed


def test_purge_erases_old_answers_and_their_bytes(replay) -> None:  # type: ignore[no-untyped-def]
    service, clients = replay
    old_id, recent_id = str(uuid.uuid4()), str(uuid.uuid4())
    (old,) = stream(clients.officer.matching, [query(WANTED[3], old_id)])
    (recent,) = stream(clients.officer.matching, [query(WANTED[3], recent_id)])
    path = service.config.stream_replies_path
    retention_s = service.config.retention.stream_replies_hours * 3600
    assert retention_s == 168 * 3600
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE replies SET answered_at = ? WHERE request_id = ?",
            (time.time() - retention_s - 60, old_id),
        )
        old_blob = db.execute("SELECT sealed FROM replies WHERE request_id = ?", (old_id,)).fetchone()[0]
    assert service.purge_replies() == 1
    files = [p.read_bytes() for p in path.parent.glob(path.name + "*")]
    assert not any(old_blob in data or old_blob[-32:] in data for data in files)
    log = service.transparency_log
    purges = [e.event() for e in log.entries(0, log.size()) if e.event().operation == "retention.purge"]
    assert purges[-1].details == {"stream_replies_erased": "1"}
    # A replay later than the retention is searched afresh; a recent one is still replayed.
    (late,) = stream(clients.officer.matching, [query(WANTED[3], old_id)])
    assert not late.replayed and late.result == old.result
    (again,) = stream(clients.officer.matching, [query(WANTED[3], recent_id)])
    assert again.replayed and without_replayed(again) == recent


def test_a_replay_after_a_restart_is_still_replayed(server_factory, clients_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service, port, config = server_factory(data_dir=tmp_path / "data")
    clients = clients_for(port)
    prepare(clients)
    request_id = str(uuid.uuid4())
    (answer,) = stream(clients.officer.matching, [query(WANTED[2], request_id)])
    assert not answer.replayed
    clients.close()
    service.stop(grace_s=1)

    again, again_port, _ = server_factory(data_dir=config.storage.data_dir)
    (replayed,) = stream(clients_for(again_port).officer.matching, [query(WANTED[2], request_id)])
    assert replayed.replayed and without_replayed(replayed) == answer
    # One log across the restart: the first server's search, the second server's replay.
    assert [e.details.get("replayed") for e in stream_entries(again, request_id)] == [None, "true"]
