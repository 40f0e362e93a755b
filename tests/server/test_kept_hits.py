"""Kept CCTV hits: ids nobody can guess, confirmed by two people, by the right role, in the right gallery.

A real server over mutual TLS: a camera streams under a signed authorisation
and its hits are kept. Their ids are random (successive hits are not
consecutive), each records the camera and the authorisation that admitted
it, only an officer (CONFIRM_MATCH on the gallery's purpose) naming the hit's
own gallery can confirm it; a hit is confirmed by two different officers (four
eyes; the attacks on that are in test_hit_review.py), a third confirmation is
refused without touching theirs, and the probe store keeps every attempt. The transparency
log links a hit to its confirmation by a keyed pseudonym of the id. An old
probe store (schema 1: sequential ids, no history) is migrated in place.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
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
from safepassage.server.cctv_authorisation import METADATA_KEY, sign
from safepassage.server.identity import Role
from safepassage.server.pseudonyms import LogPseudonyms
from safepassage.store.probes import SCHEMA_VERSION, ProbeReview
from tests.pki_helpers import ORGANISATIONS, RolePki

pytestmark = pytest.mark.server
Code = grpc.StatusCode
DIM = 128
HITS, OTHER = "hits-cams", "hits-other"
WANTED = np.random.default_rng(113).normal(scale=0.1, size=DIM).astype(np.float32)


def emb(vector: np.ndarray) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=vector.tolist()))


def code_of(call: Any) -> Code:
    try:
        call()
    except grpc.RpcError as error:
        code: Code = error.code()
        return code
    return Code.OK


@dataclass
class World:
    service: Any
    clients: Any
    role_pki: RolePki
    token: str
    channels: list[grpc.Channel]

    def stub(self, client_id: str, role: Role) -> pb_grpc.MatchingServiceStub:
        issued = self.role_pki.pki.issue_client(
            client_id, role, organisation=ORGANISATIONS.get(role), replace=True
        )
        channel = self.role_pki.channel_with(self.clients.port, issued)
        self.channels.append(channel)
        return pb_grpc.MatchingServiceStub(channel)

    def hits(self, count: int) -> list[int]:
        """Stream `count` probes near the wanted face as cam-1; the kept probes' ids, in order."""
        camera = self.clients.as_role(Role.CCTV_EDGE).matching
        requests = [
            pb.IdentifyRequest(
                gallery_id=HITS, probe=emb(WANTED + 0.001 * (i + 1)), request_id=os.urandom(8).hex()
            )
            for i in range(count)
        ]
        answers = list(
            camera.IdentifyStream(iter(requests), metadata=[(METADATA_KEY, self.token)], timeout=30)
        )
        assert all(a.result.decision == pb.MATCH and a.probe_id for a in answers)
        return [a.probe_id for a in answers]

    def confirm(self, stub: pb_grpc.MatchingServiceStub, probe_id: int, gallery: str = HITS) -> Any:
        return stub.ConfirmMatch(pb.ConfirmMatchRequest(gallery_id=gallery, probe_id=probe_id), timeout=30)


@pytest.fixture(scope="module")
def world(server_factory: Any, clients_for: Any, role_pki: RolePki) -> Iterator[World]:
    service, port, _ = server_factory()
    clients = clients_for(port)
    for gallery in (HITS, OTHER):
        clients.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id=gallery, purpose=pb.WATCHLIST)
        )
        clients.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id=gallery, reference_id="wanted-1", template=emb(WANTED))
        )
    admin = role_pki.clients[Role.ADMIN]
    token = sign(
        gallery_id=HITS,
        cameras=["cam-1"],
        legal_basis="Order 2026/320 of the border court",
        valid_for_s=3600,
        admin_cert=x509.load_pem_x509_certificate(admin.cert_pem),
        admin_key=load_pem_private_key(admin.key_pem, None),  # type: ignore[arg-type]
    )
    made = World(service, clients, role_pki, token, [])
    yield made
    for channel in made.channels:
        channel.close()


def authorisation_id(token: str) -> str:
    payload = token.split(".")[0]
    grant_id: str = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))[
        "authorisation_id"
    ]
    return grant_id


def test_hit_ids_are_random_and_record_the_camera_and_its_authorisation(world: World) -> None:
    ids = world.hits(6)
    assert len(set(ids)) == 6
    ordered = sorted(ids)
    assert all(b - a > 1 for a, b in itertools.pairwise(ordered)), "successive ids"
    # 63 random bits: a handful of hits all below 2**40 would happen about once in 2**138.
    assert max(ids) > 2**40 and all(0 < i < 2**63 for i in ids)
    kept = world.service.kept_probes.get(ids[0])
    assert (kept.camera_id, kept.authorisation_id) == ("cam-1", authorisation_id(world.token))
    # The next id along is nobody's hit.
    officer = world.clients.officer.matching
    for guess in (ids[0] + 1, ids[0] - 1):
        assert code_of(lambda guess=guess: world.confirm(officer, guess)) == Code.NOT_FOUND


def test_only_an_officer_naming_the_hits_gallery_may_confirm(world: World) -> None:
    (probe_id,) = world.hits(1)
    # Roles without CONFIRM_MATCH: another camera, a kiosk, an auditor, an administrator.
    for client_id, role in (
        ("cam-confirm", Role.CCTV_EDGE),
        ("kiosk-confirm", Role.KIOSK),
        ("auditor-confirm", Role.AUDITOR),
        ("admin-confirm", Role.ADMIN),
    ):
        stub = world.stub(client_id, role)
        assert code_of(lambda stub=stub: world.confirm(stub, probe_id)) == Code.PERMISSION_DENIED
    # An officer naming another gallery (one it may act on): no such hit there.
    officer = world.clients.officer.matching
    assert code_of(lambda: world.confirm(officer, probe_id, OTHER)) == Code.NOT_FOUND
    assert not world.service.kept_probes.get(probe_id).confirmed
    # A hit that no authorisation admitted (as kept before hits recorded one) cannot be confirmed.
    unauthorised = world.service.kept_probes.keep(HITS, "cam-1", WANTED, "wanted-1", authorisation_id="")
    assert code_of(lambda: world.confirm(officer, unauthorised)) == Code.PERMISSION_DENIED
    assert world.confirm(officer, probe_id).reference_id == "wanted-1"


def test_a_hit_is_confirmed_by_two_people_and_the_history_is_kept(world: World) -> None:
    (probe_id,) = world.hits(1)
    first, second = world.clients.officer.matching, world.stub("officer-second", Role.OFFICER)
    third = world.stub("officer-third", Role.OFFICER)
    pending = world.confirm(first, probe_id)
    assert (pending.probe_id, pending.state) == (probe_id, pb.AWAITING_SECOND_REVIEW)
    assert not world.service.kept_probes.get(probe_id).confirmed  # one pair of eyes is not enough
    done = world.confirm(second, probe_id)
    assert done.state == pb.CONFIRMED
    assert [r.reviewer for r in done.reviews] == ["officer:officer-1", "officer:officer-second"]
    with pytest.raises(grpc.RpcError) as info:
        world.confirm(third, probe_id)
    assert info.value.code() == Code.FAILED_PRECONDITION
    assert "confirmed already" in (info.value.details() or "")
    kept = world.service.kept_probes.get(probe_id)
    assert kept.confirmed and kept.confirmed_by == "officer:officer-second"
    history = world.service.kept_probes.history(probe_id)
    assert [(r.reviewed_by, r.accepted) for r in history] == [
        ("officer:officer-1", True),
        ("officer:officer-second", True),
        ("officer:officer-third", False),
    ]
    assert history[1].reviewed_at == kept.confirmed_at <= history[2].reviewed_at
    # The log links the hit and every attempt by the id's pseudonym, never the id itself.
    named = LogPseudonyms.from_key_file(world.service.config.template_key_path).probe(probe_id)
    log = world.service.transparency_log
    events = [e.event() for e in log.entries(0, log.size())]
    linked = [
        (e.operation.rsplit("/", 1)[-1], e.outcome, e.details.get("hit_state", ""))
        for e in events
        if e.details.get("probe_hmac_sha256") == named
    ]
    assert linked == [
        ("IdentifyStream", "MATCH", ""),
        ("ConfirmMatch", "OK", "AWAITING_SECOND_REVIEW"),
        ("ConfirmMatch", "OK", "CONFIRMED"),
        ("ConfirmMatch", "FAILED_PRECONDITION", ""),
    ]
    assert not any(str(probe_id).encode() in e.data for e in log.entries(0, log.size()))


def test_concurrent_confirmations_let_exactly_two_through(world: World) -> None:
    (probe_id,) = world.hits(1)
    officers = [world.stub(f"officer-race-{i}", Role.OFFICER) for i in range(6)]
    start = threading.Barrier(len(officers))
    codes: list[Code] = []

    def attempt(stub: pb_grpc.MatchingServiceStub) -> None:
        start.wait(30)
        codes.append(code_of(lambda: world.confirm(stub, probe_id)))

    threads = [threading.Thread(target=attempt, args=(stub,)) for stub in officers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(codes, key=str) == sorted([Code.OK] * 2 + [Code.FAILED_PRECONDITION] * 4, key=str)
    history = world.service.kept_probes.history(probe_id)
    assert len(history) == 6 and sum(r.accepted for r in history) == 2
    accepted = [r.reviewed_by for r in history if r.accepted]
    assert len(set(accepted)) == 2
    assert world.service.kept_probes.get(probe_id).confirmed_by == accepted[1]


V1_SCHEMA = """
CREATE TABLE probes (
    probe_id INTEGER PRIMARY KEY AUTOINCREMENT,
    gallery_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    captured_at REAL NOT NULL,
    dimension INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    candidate TEXT NOT NULL,
    confirmed_at REAL,
    confirmed_by TEXT
);
CREATE INDEX probes_by_age ON probes (captured_at) WHERE confirmed_at IS NULL;
"""


def test_a_schema_1_probe_store_is_migrated_with_its_confirmations(tmp_path: Path) -> None:
    path = tmp_path / "probes.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
        db.execute(
            "INSERT INTO probes (gallery_id, camera_id, captured_at, dimension, sealed, candidate,"
            " confirmed_at, confirmed_by)"
            " VALUES ('g', 'cam-1', 1.0, 4, x'00', 'r1', 2.0, 'officer:officer-9')"
        )
        db.execute(
            "INSERT INTO probes (gallery_id, camera_id, captured_at, dimension, sealed, candidate)"
            " VALUES ('g', 'cam-1', 1.0, 4, x'00', 'r2')"
        )
    sealer = store.TemplateSealer(os.urandom(32))
    probes = store.ProbeStore.open(path, sealer)
    try:
        old = probes.get(1)
        assert (old.confirmed, old.confirmed_by, old.authorisation_id) == (True, "officer:officer-9", "")
        assert probes.history(1) == [ProbeReview(2.0, "officer:officer-9", True)]
        # An old unconfirmed hit has no authorisation on record; its confirmation is the policy's call.
        assert probes.confirm(2, "g", "officer:officer-1").state is store.HitState.AWAITING_SECOND_REVIEW
        assert probes.confirm(2, "g", "officer:officer-2").probe.confirmed_by == "officer:officer-2"
        fresh = probes.keep("g", "cam-2", np.ones(4), "r3", authorisation_id="a1")
        assert fresh not in (1, 2, 3) and probes.get(fresh, "g").authorisation_id == "a1"
        assert np.array_equal(probes.vector(fresh), np.ones(4, dtype=np.float32))
        with pytest.raises(store.ProbeNotFound):
            probes.get(fresh, "another")
    finally:
        probes.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    reopened = store.ProbeStore.open(path, sealer)  # a second open finds it migrated
    try:
        assert len(reopened.history(1)) == 1 and reopened.count() == 3
    finally:
        reopened.close()


def test_a_schema_2_probe_store_is_migrated_its_confirmations_kept_and_pending_hits_take_four_eyes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "probes.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA.replace("AUTOINCREMENT", ""))
        db.execute("ALTER TABLE probes ADD COLUMN authorisation_id TEXT NOT NULL DEFAULT ''")
        db.executescript(
            "CREATE TABLE probe_reviews (probe_id INTEGER NOT NULL, reviewed_at REAL NOT NULL,"
            " reviewed_by TEXT NOT NULL, accepted INTEGER NOT NULL);"
            "CREATE INDEX probe_reviews_by_probe ON probe_reviews (probe_id);"
        )
        # 77 was confirmed under version 2 (one officer sufficed then); 78 is pending.
        db.execute(
            "INSERT INTO probes (probe_id, gallery_id, camera_id, captured_at, dimension, sealed, candidate,"
            " confirmed_at, confirmed_by, authorisation_id)"
            " VALUES (77, 'g', 'cam-1', 1.0, 4, x'00', 'r1', 2.0, 'officer:officer-9', 'a1')"
        )
        db.execute("INSERT INTO probe_reviews VALUES (77, 2.0, 'officer:officer-9', 1)")
        db.execute(
            "INSERT INTO probes (probe_id, gallery_id, camera_id, captured_at, dimension, sealed, candidate,"
            " authorisation_id) VALUES (78, 'g', 'cam-1', 3.0, 4, x'00', 'r2', 'a1')"
        )
        db.execute("PRAGMA user_version=2")
    probes = store.ProbeStore.open(path, store.TemplateSealer(os.urandom(32)))
    try:
        confirmed, pending = probes.queue("g")
        assert confirmed.state is store.HitState.CONFIRMED  # a confirmation on record stays one
        assert pending.state is store.HitState.AWAITING_REVIEW
        assert (pending.evidence.score, pending.evidence.legal_basis) == (None, "")  # not recorded then
        assert probes.confirm(78, "g", "officer:officer-1").state is store.HitState.AWAITING_SECOND_REVIEW
        with pytest.raises(store.ProbeNotFound):
            probes.confirm(78, "other", "officer:officer-2")
        assert probes.confirm(78, "g", "officer:officer-2").state is store.HitState.CONFIRMED
        assert [r.action for r in probes.history(77)] == [store.ReviewAction.CONFIRM]
    finally:
        probes.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
