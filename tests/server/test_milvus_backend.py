"""The milvus backend (Milvus Lite, embedded) behind the same API: a server whose galleries live
in Milvus answers as the FAISS backend does on the same data, checks Milvus against the store at
start-up, and refills a collection that lost writes."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from safepassage.api.v1 import matching_pb2 as pb
from tests.server.test_scale_api import fill, identify, probe, vectors

pytestmark = pytest.mark.server


def ranked(clients, gallery: str, probes) -> list[list[tuple[str, float]]]:  # type: ignore[no-untyped-def]
    return [
        [(c.reference_id, c.score) for c in identify(clients, gallery, p, top_k=10).faces[0].candidates]
        for p in probes
    ]


def same(got: list[list[tuple[str, float]]], want: list[list[tuple[str, float]]]) -> None:
    for mine, theirs in zip(got, want, strict=True):
        assert [r for r, _ in mine] == [r for r, _ in theirs]
        assert np.allclose([s for _, s in mine], [s for _, s in theirs], atol=1e-4)


def test_milvus_backend_answers_as_faiss_and_survives_a_restart(server_factory, clients_for) -> None:  # type: ignore[no-untyped-def]
    rows, probes = vectors(500, 30), vectors(30, 31)
    probes[:15] = rows[:15] + 0.05 * vectors(15, 32)
    _, faiss_port, _ = server_factory()
    faiss_clients = clients_for(faiss_port)
    fill(faiss_clients, "w", rows)
    want = ranked(faiss_clients, "w", probes)

    service, port, config = server_factory(**{"matching.backend": "milvus"})
    clients = clients_for(port)
    fill(clients, "w", rows)
    described = clients.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="w"))
    assert (described.index_kind, described.size, described.index_recall) == ("milvus", 500, 1.0)
    same(ranked(clients, "w", probes), want)
    # 1:few and deletion go through Milvus too.
    clients.admin.matching.DeleteTemplate(pb.DeleteTemplateRequest(gallery_id="w", reference_id="r0"))
    few = identify(clients, "w", rows[1], restrict_to=["r1", "r2"], top_k=5).faces[0].candidates
    assert [c.reference_id for c in few] == ["r1", "r2"]
    with pytest.raises(grpc.RpcError) as deleted:  # a deleted reference is no longer there to restrict to
        identify(clients, "w", rows[1], restrict_to=["r1", "r0"], top_k=5)
    assert deleted.value.code() == grpc.StatusCode.NOT_FOUND
    # Captures added to a subject replace its one entry in Milvus as in FAISS: the same answers.
    for each in (clients, faiss_clients):
        for extra in vectors(2, 33):
            each.admin.matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id="w", reference_id="r5", template=probe(extra), add_capture=True
                )
            )
    assert clients.admin.matching.CountTemplates(pb.CountTemplatesRequest(gallery_id="w")).count == 499
    near = [rows[5], *probes[:4]]  # the first one nearest r5, whose entry is now its captures' mean
    fused = ranked(clients, "w", near)
    assert fused[0][0][0] == "r5"
    faiss_clients.admin.matching.DeleteTemplate(pb.DeleteTemplateRequest(gallery_id="w", reference_id="r0"))
    same(fused, ranked(faiss_clients, "w", near))
    assert (config.storage.data_dir / "milvus.db").exists()
    assert not list((config.storage.data_dir / "snapshots").glob("*.snapshot"))  # Milvus persists itself

    # A write Milvus never saw (as after a crash between the store's commit and Milvus):
    # at the next start the collection disagrees with the store and is refilled from it.
    live = service.matcher._galleries["w"]
    live.index.milvus.remove(np.asarray([2], np.int64))
    service.stop(grace_s=1)
    _, port, _ = server_factory(data_dir=config.storage.data_dir, **{"matching.backend": "milvus"})
    clients = clients_for(port)
    after = clients.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="w"))
    assert after.size == 499
    same(ranked(clients, "w", probes), ranked(faiss_clients, "w", probes))
    clients.admin.galleries.DeleteGallery(pb.DeleteGalleryRequest(gallery_id="w"))
    fill(clients, "w", rows[:3])  # a new gallery of the same name starts empty
    assert clients.admin.matching.CountTemplates(pb.CountTemplatesRequest(gallery_id="w")).count == 3
