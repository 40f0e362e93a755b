"""The formats on disk before the recipes in safepassage.core still open, and are still written.

Known-answer vectors made by the code as it was before its sealing moved into
``safepassage.core.sealing`` (commit 41b6fa0), with every random nonce fixed at bytes 100..111:
the store's sealed templates and stream answers, a record part, a KEK-wrapped data key, an edge
outbox blob, an index snapshot and a holder credential. Each opens with today's code, and
where a format is deterministic but for its nonce, today's code writes the very same bytes.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from safepassage.camera_edge.device_key import DeviceKey
from safepassage.core.keyring import KeyringState
from safepassage.credential import IssuerKey, ReaderKey, TrustedIssuers, verify
from safepassage.enrolment.errors import KeyringError
from safepassage.enrolment.kek import FileKeyring, WrappedKey
from safepassage.enrolment.record_cipher import DataKey, RecordCipher
from safepassage.matcher import snapshot
from safepassage.matcher.gallery_index import GalleryIndex
from safepassage.matcher.index import FlatIndex
from safepassage.matcher.metric import Metric
from safepassage.store.sealing import TemplateSealer

NONCE = bytes(range(100, 112))
STORE_KEY = bytes(range(32))
DATA_KEY = bytes(range(32, 64))
KEK = bytes(range(64, 96))
DEVICE_KEY = bytes(range(96, 128))
SNAPSHOT_KEY = bytes(range(128, 160))

STORE_TEMPLATE = bytes.fromhex(
    "01cbc261b8609ddf0b6465666768696a6b6c6d6e6fe454258b6b8f39956b1689b1594e13269869b62fa5cdf9fa2b9e816c"
)
STORE_ANSWER = bytes.fromhex(
    "01cbc261b8609ddf0b6465666768696a6b6c6d6e6f853a56c30efd698435ad4c79af8c52ac1c8b6649f54b"
)
RECORD_PART = bytes.fromhex(
    "0108026349037ff7656465666768696a6b6c6d6e6f8c4d203bec4b57d8115372bd643b1ee4ebf651028afd6742fa341f"
    "72c1139c69ba"
)
KEK_WRAPPED = bytes.fromhex(
    "01030000006465666768696a6b6c6d6e6fd15f244771b7e095e54bb9ab75d5b3c97c6fbef9a5b98bf124b8f5d77e7c82"
    "053b24ae50016ed910d0e8e663ca14b64c"
)
DEVICE_SEALED = bytes.fromhex(
    "01839dbe8d21deaf546465666768696a6b6c6d6e6fe4053509989cc2ebcc353828d765489ab8f319edcce635e7f2cbe3cd2ac2"
)
SNAPSHOT = bytes.fromhex(
    "5350534e415002b40000007b22646967657374223a202261626162616261626162616261626162616261626162616261"
    "626162616261626162616261626162616261626162616261626162616261626162616261626162222c202264696d656e"
    "73696f6e223a20342c202267616c6c6572795f6964223a20226731222c202267656e65726174696f6e223a20352c2022"
    "696e6465785f6b696e64223a2022666c6174222c20226d6574726963223a20226c32222c202273697a65223a20327df0"
    "0000006465666768696a6b6c6d6e6f99d1eb9c4e17c8310e2ffb01e75d152ad76f5c403165e01b6adbdb484120bc2c31"
    "9d78fd6b82b35fe6fca3f55b7bc762809a8bbb3afc07802af32bc9f414ba4fde7c82822fdf4b944fdc3bf1f0a4d6f01f"
    "31c99da7b906335ba5b00468595cec2f88c51d6d41d63997762bd146d9347baa4e62f84cadc7d04c3e35cda0c73a3540"
    "9e1609d790152b6c83a23af29e0781e69b5363993a6e8388bbeb9105df9cdc74b6f6ed89a88e9f068907390dca426ed9"
    "7a0498c5ef52d11a2b8e9966c25a751b07e83592f978af1e65f719591cbc92e82437f7166dc269110be7526e223aef53"
    "e3eb6a8ae17f08cd484dda68efb6ad"
)

# A KEK keyring file as the code before the recipes wrote it (its version 3 is KEK).
KEYRING = """{
  "format": "safepassage-kek-keyring",
  "format_version": 1,
  "current_version": 3,
  "keys": {
    "3": "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8="
  },
  "destroyed": [
    1,
    2
  ]
}
"""
ISSUER_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIM5FsbgFB3/YFy+pwXbuawC5SpfQv6FQ1JDYdSMJzoxE\n"
    "-----END PRIVATE KEY-----\n"
)
READER_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VuBCIEINDZCAH+BCyloVn1Ka5FeFcgblTywOFAZV5FYDSb17pH\n"
    "-----END PRIVATE KEY-----\n"
)
CREDENTIAL = (
    "SP1:9701EGY*B$/A8OAA%I-%QJ%U-0S:A5LA8CU4D-E000D20*WE88G000L601XDC9G9PN51O0GGG4NY/APYC4S72WJTPDIF"
    "7$93BZ9I4TIJV:J2:E7U.T/R9:HAX%F4AJVTST1HZ78-4LXKMH5HCWGTNRAGH:C3M9DTN2G6WUTRQ2V*RFH133MD5R1P92XC"
    "LE4MR2G7E1F8UPXFPSOXZFYGU910X3O289C2HV/3+FCLT1QZ1$%A 64C8A0HDLFM-LUJI24-6 186VMPLV0XF:BWV:1GUS4L"
    "V$ZP8GWZ.N4PDNNKECE5DD4MN.G8:*7.HDV7AIY3J85DVBI09FBE42DLLEW5ENIQN2KKGAXPSC8QP5D5PVWHL.SGH%9F3T O"
    "VXUP9-GZRO/N2"
)


@pytest.fixture
def fixed_nonce() -> Iterator[None]:
    def urandom(size: int) -> bytes:
        assert size == len(NONCE)
        return NONCE

    with mock.patch("os.urandom", urandom):
        yield


def test_store_templates_and_answers(fixed_nonce: None) -> None:
    sealer = TemplateSealer(STORE_KEY)
    assert sealer.fingerprint.hex() == "cbc261b8609ddf0b"
    assert sealer.digest_key.hex() == "39380e6e5f5887b472bcfe2f4e174264192fcc6d8733506dc6fbb376e46368fb"
    vector = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    opened = sealer.open(STORE_TEMPLATE, gallery_id="g1", template_id=7, dimension=3)
    np.testing.assert_array_equal(opened, vector)
    assert sealer.seal(vector, gallery_id="g1", template_id=7) == STORE_TEMPLATE
    context = ("stream-answer:client-a", "req-1")
    assert sealer.open_bytes(STORE_ANSWER, context=context) == b"answer"
    assert sealer.seal_bytes(b"answer", context=context) == STORE_ANSWER


def test_record_parts_and_wrapped_keys(fixed_nonce: None, tmp_path: Path) -> None:
    key = DataKey(record_id="rec-1", key=DATA_KEY)
    assert key.key_check.hex() == "08026349037ff765"
    assert RecordCipher.open(key, "secrets", RECORD_PART) == b"the record's part"
    assert RecordCipher.seal(key, "secrets", b"the record's part") == RECORD_PART

    path = tmp_path / "kek.json"
    path.write_text(KEYRING)
    path.chmod(0o600)
    keyring = FileKeyring.open(path)  # a keyring file as the old code wrote them
    assert keyring.unwrap(WrappedKey.from_blob(KEK_WRAPPED), "rec-1") == DATA_KEY
    assert keyring.wrap(DATA_KEY, "rec-1").blob == KEK_WRAPPED
    assert keyring.destroyed_versions() == (1, 2) and keyring.rotate() == 4
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rewritten = json.loads(path.read_text())
    assert rewritten["current_version"] == 4 and rewritten["keys"]["3"] == json.loads(KEYRING)["keys"]["3"]


def test_a_keyring_written_whole_is_read_back_the_same(tmp_path: Path) -> None:
    from safepassage.core import keyring
    from safepassage.enrolment import kek

    old = KeyringState(current=3, keys={3: KEK}, destroyed=(1, 2))
    assert keyring.serialise(old, kek._FORMAT) == KEYRING.encode()  # the very bytes
    path = tmp_path / "ring.json"
    state = KeyringState(current=2, keys={2: KEK}, destroyed=(1,))
    assert keyring.write(path, state, kek._FORMAT, replace=False)
    assert not keyring.write(path, state, kek._FORMAT, replace=False)  # never over another's
    assert keyring.load(path, kek._FORMAT) == state
    path.chmod(0o640)
    with pytest.raises(KeyringError, match="chmod 600"):
        keyring.load(path, kek._FORMAT)


def test_the_edge_outbox(fixed_nonce: None) -> None:
    key = DeviceKey(DEVICE_KEY)
    assert key.fingerprint.hex() == "839dbe8d21deaf54"
    assert key.open(DEVICE_SEALED, b"outbox-request:q-1") == b"queued request"
    assert key.seal(b"queued request", b"outbox-request:q-1") == DEVICE_SEALED


def _index() -> FlatIndex:
    index = FlatIndex(4, Metric.L2)
    index.add(np.array([1, 2], dtype=np.int64), np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32))
    return index


def test_index_snapshots(fixed_nonce: None, tmp_path: Path) -> None:
    header = snapshot.SnapshotHeader(
        gallery_id="g1", generation=5, size=2, digest="ab" * 32, dimension=4, metric="l2"
    )
    old = tmp_path / "old.snapshot"
    old.write_bytes(SNAPSHOT)
    loaded = snapshot.load(old, SNAPSHOT_KEY, header, lambda index: bytes.fromhex("ab" * 32))
    assert isinstance(loaded, GalleryIndex) and loaded.size == 2
    new = tmp_path / "g1.snapshot"
    snapshot.save(new, header, _index(), SNAPSHOT_KEY)
    assert new.read_bytes() == SNAPSHOT
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["g1.snapshot", "old.snapshot"]  # no temporary file left


def test_holder_credentials(tmp_path: Path) -> None:
    issuer_path, reader_path = tmp_path / "issuer.pem", tmp_path / "reader.pem"
    for path, pem in ((issuer_path, ISSUER_PEM), (reader_path, READER_PEM)):
        path.write_text(pem)
        path.chmod(0o600)
    issuer = IssuerKey.load(issuer_path, "ngo-1")
    reader = ReaderKey.load(reader_path)
    opened = verify(CREDENTIAL, TrustedIssuers([issuer.public]), reader, now=datetime(2025, 1, 2, tzinfo=UTC))
    assert (opened.record_id, opened.model, opened.threshold) == ("rec-1", "m1", 0.6)
    np.testing.assert_array_equal(opened.template, np.arange(4, dtype=np.float32))
