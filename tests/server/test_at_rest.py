"""No template is ever written in the clear: not in SQLite, its WAL, nor index snapshots, nor
any other file the server keeps in its data folder (the camera probe store, the transparency log)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safepassage.api.v1 import matching_pb2 as pb

pytestmark = pytest.mark.server


def test_no_plaintext_template_in_any_file_of_the_data_folder(  # type: ignore[no-untyped-def]
    server_factory, clients_for, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    service, port, config = server_factory(data_dir)
    vectors = np.random.default_rng(21).normal(scale=0.1, size=(200, 128)).astype(np.float32)
    with clients_for(port) as clients:
        clients.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id="secret", purpose=pb.WATCHLIST)
        )
        for i, v in enumerate(vectors):
            clients.admin.matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id="secret",
                    reference_id=f"t{i}",
                    template=pb.Probe(embedding=pb.Embedding(values=v.tolist())),
                )
            )
        # Searches too: probes and hits must not leave templates in any file either.
        for v in vectors[:5]:
            clients.officer.matching.Identify(
                pb.IdentifyRequest(
                    gallery_id="secret", probe=pb.Probe(embedding=pb.Embedding(values=v.tolist()))
                )
            )
    files_while_running = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
    service.stop(grace_s=1)  # writes the index snapshot
    files = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
    assert any(p.suffix == ".snapshot" for p in files) and any(p.name.endswith(".sqlite3") for p in files)
    # The scan covers every store the server keeps, not only the template store.
    assert {config.database_path, config.probes_path, config.audit_log_path} <= files.keys()
    contents = list(files.values()) + list(files_while_running.values())
    for vector in vectors:
        raw = vector.tobytes()
        pieces = [raw, raw[:16], raw[200:216], raw[-16:]]
        assert not any(piece in blob for piece in pieces for blob in contents)
