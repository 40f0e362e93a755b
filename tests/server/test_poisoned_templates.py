"""Issue #15, finding 1: one template could abort the server, and again after every restart.

A component of 2e19 (or about 2e18 in every component) is finite, so inserts
accepted it; when the gallery outgrew exact search, FAISS's k-means overflowed
float32 on it and aborted the process from C++, and a restart rebuilt the same
index from the same rows and died again. Now:

* templates are checked against what the gallery's model can produce
  (safepassage.matcher.vector_bounds) at insert, bulk insert and calibration, and refused
  with INVALID_ARGUMENT naming the component or the norm, storing nothing;
* rows already stored by an older version (written here through the store's
  own sealing API, as that version did) are quarantined at start-up: kept
  aside, not indexed, counted by DescribeGallery, deletable by DeleteTemplate;
  a row that cannot be opened is quarantined the same way;
* the approximate index is trained on clean rows only, in a real server
  process, which keeps serving and restarts again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from safepassage import store
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.server.identity import Role
from tests.conftest import Clients
from tests.process import ServerProcess

pytestmark = pytest.mark.server
DIM = 128
Code = grpc.StatusCode
Vectors = npt.NDArray[np.float32]
# Genuine templates: more than the exact-search threshold below, so the approximate index is trained.
GENUINE = 1100
EXACT_BELOW = 1000


def unit_vectors(count: int, seed: int) -> Vectors:
    """Random directions of norm 1, within what the dlib model produces (norm ~1.4, components < 0.6)."""
    rows = np.random.default_rng(seed).normal(size=(count, DIM))
    units: Vectors = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return units


def emb(vector: npt.ArrayLike) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=np.asarray(vector, dtype=np.float64).tolist()))


def poisoned() -> list[tuple[str, Vectors, str]]:
    """(reference, vector, what is wrong): the shapes that aborted FAISS, and one merely out of range."""
    base = unit_vectors(3, seed=99)
    one_huge = base[0].copy()
    one_huge[17] = 2e19
    all_large = np.full(DIM, 2e18, dtype=np.float32)
    out_of_range = base[1].copy()
    out_of_range[5] = 1.5
    return [
        ("huge-component", one_huge, "component 17"),
        ("large-everywhere", all_large, "component 0"),
        ("out-of-range", out_of_range, "component 5"),
    ]


# -- refused at the API ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(server_factory: Callable[..., Any], clients_for: Callable[[int], Clients]) -> Iterator[Clients]:
    _, port, _ = server_factory()
    clients = clients_for(port)
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="poison", purpose=pb.WATCHLIST))
    clients.admin.matching.BulkInsertTemplates(
        iter(
            pb.InsertTemplateRequest(gallery_id="poison", reference_id=f"g{i}", template=emb(v))
            for i, v in enumerate(unit_vectors(20, seed=1))
        )
    )
    yield clients


def _count(api: Clients) -> int:
    return api.admin.matching.CountTemplates(pb.CountTemplatesRequest(gallery_id="poison")).count


@pytest.mark.parametrize(("reference", "vector", "named"), poisoned())
def test_an_insert_outside_the_models_range_is_refused_and_stores_nothing(
    api: Clients, reference: str, vector: Vectors, named: str
) -> None:
    before = _count(api)
    with pytest.raises(grpc.RpcError) as refused:
        api.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="poison", reference_id=reference, template=emb(vector))
        )
    assert refused.value.code() is Code.INVALID_ARGUMENT
    assert named in (refused.value.details() or "")
    assert _count(api) == before
    # Nothing half-stored: the reference id is still free for a genuine template.
    api.admin.matching.InsertTemplate(
        pb.InsertTemplateRequest(
            gallery_id="poison", reference_id=reference, template=emb(unit_vectors(1, 7)[0])
        )
    )
    api.admin.matching.DeleteTemplate(pb.DeleteTemplateRequest(gallery_id="poison", reference_id=reference))


def test_a_template_whose_norm_is_beyond_the_model_is_refused(api: Clients) -> None:
    # Every component within [-1, 1], yet a norm of about 9: no dlib face gives that.
    vector = np.full(DIM, 0.8, dtype=np.float32)
    with pytest.raises(grpc.RpcError) as refused:
        api.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="poison", reference_id="long", template=emb(vector))
        )
    assert refused.value.code() is Code.INVALID_ARGUMENT
    assert "norm" in (refused.value.details() or "")


def test_a_bulk_insert_refuses_each_poisoned_item_and_keeps_the_rest(api: Clients) -> None:
    before = _count(api)
    genuine = unit_vectors(4, seed=2)
    items = [
        pb.InsertTemplateRequest(gallery_id="poison", reference_id=f"bulk-{i}", template=emb(v))
        for i, v in enumerate(genuine)
    ]
    for reference, vector, _ in poisoned():
        items.insert(
            2,
            pb.InsertTemplateRequest(
                gallery_id="poison", reference_id=f"bulk-{reference}", template=emb(vector)
            ),
        )
    answer = api.admin.matching.BulkInsertTemplates(iter(items))
    assert (answer.inserted, answer.failed) == (4, 3)
    assert {e.code for e in answer.errors} == {Code.INVALID_ARGUMENT.value[0]}
    assert sorted(e.reference_id for e in answer.errors) == sorted(f"bulk-{r}" for r, _, _ in poisoned())
    assert _count(api) == before + 4


def test_calibration_refuses_a_poisoned_impostor(api: Clients) -> None:
    impostors = [emb(v) for v in unit_vectors(30, seed=3)]
    impostors[11] = emb(poisoned()[0][1])
    with pytest.raises(grpc.RpcError) as refused:
        api.admin.galleries.CalibrateGallery(
            pb.CalibrateGalleryRequest(gallery_id="poison", impostors=impostors, target_fpir=0.01)
        )
    assert refused.value.code() is Code.INVALID_ARGUMENT
    assert "component 17" in (refused.value.details() or "")
    described = api.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="poison"))
    assert not described.HasField("calibration") and not described.HasField("target_fpir")


# -- rows an older version stored ----------------------------------------------------------------


def _write_config(folder: Path) -> Path:
    config = folder / "poisoned.toml"
    config.write_text(
        "[limits]\nenabled = false\n[fishing]\nenabled = false\n"
        f"[matching.index]\nexact_below = {EXACT_BELOW}\n"
    )
    return config


def _store(data: Path) -> store.TemplateStore:
    sealer = store.TemplateSealer.from_key_file(data.with_name(f"{data.name}-keys") / "template.key")
    return store.TemplateStore.open(data / "safepassage.sqlite3", sealer)


def _plant_poisoned_rows(data: Path) -> list[str]:
    """What a version without bounds accepted, written through the store's own API; and one unreadable row.

    Returns the references that must be quarantined.
    """
    rng = np.random.default_rng(5)
    rows: list[tuple[str, Vectors]] = []
    for i in range(40):  # one component of 2e19
        vector = unit_vectors(1, seed=100 + i)[0]
        vector[int(rng.integers(DIM))] = 2e19
        rows.append((f"bad-huge-{i}", vector))
    for i in range(10):  # about 2e18 everywhere
        rows.append((f"bad-large-{i}", np.full(DIM, 2e18 * (1 + i / 10), dtype=np.float32)))
    rows.append(("bad-range", np.full(DIM, 1.2, dtype=np.float32)))
    with _store(data) as old:
        ids = old.templates.insert("gate", rows)
    # A sealed blob moved onto another row no longer opens there.
    with closing(sqlite3.connect(data / "safepassage.sqlite3", isolation_level=None)) as raw:
        raw.execute(
            "UPDATE templates SET sealed = (SELECT sealed FROM templates WHERE template_id = ?)"
            " WHERE template_id = (SELECT template_id FROM templates WHERE reference_id = 'g-unreadable')",
            (ids[0] - 1,),
        )
    return [r for r, _ in rows] + ["g-unreadable"]


def _describe(server: ServerProcess) -> pb.Gallery:
    with server.channel() as channel:
        return pb_grpc.GalleryServiceStub(channel).DescribeGallery(
            pb.DescribeGalleryRequest(gallery_id="gate"), timeout=30
        )


def _wait_for_approximate(server: ServerProcess) -> pb.Gallery:
    """DescribeGallery once the background build has trained the approximate index; the process must live."""
    deadline = time.monotonic() + 300
    while True:
        assert server.process.poll() is None, "server died:\n" + "".join(server.log[-20:])
        described = _describe(server)
        if described.index_kind != "flat":
            return described
        assert time.monotonic() < deadline, "the approximate index was never built:\n" + "".join(
            server.log[-20:]
        )
        time.sleep(0.5)


def _top1(server: ServerProcess, probe: pb.Probe) -> str:
    with server.channel("officer-1") as channel:
        answer = pb_grpc.MatchingServiceStub(channel).Identify(
            pb.IdentifyRequest(gallery_id="gate", probe=probe, top_k=1), timeout=30
        )
    return answer.faces[0].candidates[0].reference_id


def _face_pair(faces_dir: Path) -> tuple[bytes, bytes]:
    """Two photos of one person."""
    folder = next(f for f in sorted((faces_dir / "lfw").iterdir()) if len(list(f.glob("*.jpg"))) >= 2)
    first, second = sorted(folder.glob("*.jpg"))[:2]
    return first.read_bytes(), second.read_bytes()


def test_poisoned_rows_are_quarantined_at_start_up_and_the_server_keeps_serving(
    tmp_path: Path, faces_dir: Path
) -> None:
    data = tmp_path / "data"
    config = _write_config(tmp_path)
    genuine = unit_vectors(GENUINE, seed=4)
    enrolled_face, probe_face = _face_pair(faces_dir)
    server = ServerProcess(data, "--config", str(config))
    try:
        with server.channel() as channel:
            galleries, matching = pb_grpc.GalleryServiceStub(channel), pb_grpc.MatchingServiceStub(channel)
            galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="gate", purpose=pb.WATCHLIST))
            # Below the threshold for now: the older version's rows below push it over.
            answer = matching.BulkInsertTemplates(
                iter(
                    pb.InsertTemplateRequest(gallery_id="gate", reference_id=f"g{i}", template=emb(v))
                    for i, v in enumerate(genuine[: EXACT_BELOW - 100])
                )
            )
            assert answer.inserted == EXACT_BELOW - 100
            matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id="gate", reference_id="g-unreadable", template=emb(unit_vectors(1, 8)[0])
                )
            )
            matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id="gate", reference_id="face", template=pb.Probe(image=enrolled_face)
                )
            )
    finally:
        assert server.stop() == 0
    quarantined = _plant_poisoned_rows(data)
    # The rest of the genuine templates, as the older version would have stored them too.
    with _store(data) as old:
        old.templates.insert("gate", [(f"g{i}", genuine[i]) for i in range(EXACT_BELOW - 100, GENUINE)])

    # Today this start trained FAISS on the poisoned rows and aborted the process.
    server = ServerProcess(data, "--config", str(config))
    server.issue("officer-1", Role.OFFICER)
    try:
        described = _wait_for_approximate(server)
        assert described.quarantined_templates == len(quarantined)
        assert described.size == GENUINE + 1
        for i in (0, 500, GENUINE - 1):
            assert _top1(server, emb(genuine[i])) == f"g{i}"
        assert _top1(server, pb.Probe(image=probe_face)) == "face"
        assert server.logged(f"quarantined {len(quarantined)} templates")
        assert not any("2e+19" in line or "2e19" in line for line in server.log)
    finally:
        assert server.stop() == 0

    # And again: the quarantine holds, the clean snapshot loads, nothing is trained on poison.
    server = ServerProcess(data, "--config", str(config))
    try:
        server.wait_serving()
        assert server.logged("index loaded from verified snapshot")
        described = _describe(server)
        assert (described.quarantined_templates, described.size) == (len(quarantined), GENUINE + 1)
        assert described.index_kind != "flat"
        assert _top1(server, emb(genuine[7])) == "g7"
        with server.channel() as channel:
            matching = pb_grpc.MatchingServiceStub(channel)
            # An operator removes a quarantined row; its reference id is free again.
            matching.DeleteTemplate(pb.DeleteTemplateRequest(gallery_id="gate", reference_id="bad-huge-3"))
            matching.DeleteTemplate(pb.DeleteTemplateRequest(gallery_id="gate", reference_id="g-unreadable"))
            matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id="gate", reference_id="bad-huge-3", template=emb(unit_vectors(1, 9)[0])
                )
            )
        with server.channel("officer-1") as officer, pytest.raises(grpc.RpcError) as missing:
            pb_grpc.MatchingServiceStub(officer).Verify(
                pb.VerifyRequest(gallery_id="gate", reference_id="bad-large-2", probe=emb(genuine[0]))
            )
        assert missing.value.code() is Code.NOT_FOUND and "quarantined" in (missing.value.details() or "")
        described = _describe(server)
        assert (described.quarantined_templates, described.size) == (len(quarantined) - 2, GENUINE + 2)
        assert _top1(server, emb(unit_vectors(1, 9)[0])) == "bad-huge-3"
    finally:
        assert server.stop() == 0
