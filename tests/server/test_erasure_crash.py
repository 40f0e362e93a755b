"""An erasure cut short at each of its steps (the server killed, as by a power cut), then restarted.

Whatever step the stop fell on, the next start completes the erasure before it
serves: the record is gone (a tombstone with its receipt remains), no journal
entry is left, only the current key-encryption key version is alive, and a copy
of every file of the data folder taken before the erasure, opened with the live
keys, yields nothing of the erased person.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import matching_pb2_grpc as mpb_grpc
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.api.v1 import protected_identity_pb2_grpc as pb_grpc
from safepassage.enrolment import FileKeyring, KeyDestroyed, RecordVault
from safepassage.enrolment.record_cipher import RecordCipher
from safepassage.server.identity import Role
from tests.crash_serve import STEPS
from tests.process import ServerProcess
from tests.server.protected_helpers import GALLERY, HOLDER, OTHER, enrol, person

pytestmark = pytest.mark.server


@dataclass
class _Stubs:
    protected: pb_grpc.ProtectedIdentityServiceStub


@pytest.mark.parametrize("step", list(STEPS))
def test_an_erasure_interrupted_at_any_step_is_completed_at_the_next_start(
    step: str, tmp_path: Path, faces_dir: Path
) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, launcher=("-m", "tests.crash_serve", step))
    try:
        server.issue("ngo-1", Role.NGO_CASEWORKER)
        with server.channel() as admin:
            mpb_grpc.GalleryServiceStub(admin).CreateGallery(
                mpb.CreateGalleryRequest(gallery_id=GALLERY, purpose=mpb.PROTECTED_IDENTITY)
            )
        with server.channel("ngo-1") as channel:
            ngo = _Stubs(pb_grpc.ProtectedIdentityServiceStub(channel))
            victim = enrol(ngo, person(faces_dir, OTHER), "Bishnu", "Shrestha", "PZ9988776")
            keeper = enrol(ngo, person(faces_dir, HOLDER), "Kamala", "Magar", "PK5554443")
            backup = tmp_path / "backup"
            shutil.copytree(data, backup)  # every file of the data folder, before the erasure
            with pytest.raises(grpc.RpcError) as cut:
                ngo.protected.EraseRecord(
                    pb.EraseRecordRequest(holder=pb.HolderRef(recovery_code=victim.recovery_code)), timeout=60
                )
            assert cut.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert server.process.wait(timeout=30) == 137
    finally:
        if server.process.poll() is None:
            server.kill_hard()

    restarted = ServerProcess(data)
    try:
        restarted.wait_serving()
        with restarted.channel("ngo-1") as channel:
            stub = pb_grpc.ProtectedIdentityServiceStub(channel)
            with pytest.raises(grpc.RpcError) as gone:
                stub.GetConsent(pb.GetConsentRequest(holder=pb.HolderRef(record_id=victim.record_id)))
            assert gone.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "erased" in (gone.value.details() or "")
            kept = stub.ShareRecord(
                pb.ShareRecordRequest(holder=pb.HolderRef(recovery_code=keeper.recovery_code))
            )
            assert kept.record.details.family_name == "Magar"
    finally:
        assert restarted.stop() == 0

    keys_dir = data.parent / f"{data.name}-keys"
    keyring = FileKeyring.open(keys_dir / "record-kek.json")
    assert len(keyring.versions()) == 1  # every version an earlier copy used is destroyed
    vault = RecordVault.open(data / "protected_records.sqlite3")
    try:
        assert vault.erasures.pending() == []
        tombstone = vault.erasures.tombstone(victim.record_id)
        assert tombstone is not None and victim.record_id in tombstone.receipt
    finally:
        vault.close()
    cipher = RecordCipher(keyring)
    copied = [path for path in backup.rglob("*") if path.is_file()]
    for path in copied:
        content = path.read_bytes()
        for secret in (b"Bishnu", b"Shrestha", b"PZ9988776"):
            assert secret not in content, f"{secret!r} in {path}"
    old = RecordVault.open(backup / "protected_records.sqlite3")
    try:
        wrapped = dict(old.data_keys.wrapped())
        assert victim.record_id in wrapped
        for record_id, key in wrapped.items():
            with pytest.raises(KeyDestroyed):
                cipher.data_key(record_id, key)
    finally:
        old.close()
