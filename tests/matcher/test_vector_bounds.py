"""Templates are held to what the gallery's model produces; stored rows beyond it are quarantined (issue #15).

The abort itself (FAISS's k-means overflowing float32 and terminating the
process from C++) cannot run inside pytest: the training guard is tested in a
child process, where today's code dies with SIGABRT.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from safepassage import store
from safepassage.matcher import GalleryPurpose, GallerySpec, Matcher, Metric
from safepassage.matcher.errors import InvalidVector
from safepassage.matcher.gallery_index import GalleryIndex
from safepassage.matcher.index import FlatIndex
from safepassage.matcher.index_loader import IndexLoader
from safepassage.matcher.index_policy import IndexPolicy
from safepassage.matcher.protection import TemplateTransform
from safepassage.matcher.vector_bounds import GENERIC, bounds_of, check_templates, stored_bounds
from tests.conftest import REPO
from tests.lfw_embeddings import LfwEmbeddings

DLIB = "dlib-resnet-v1"
DIM = 128
Vectors = npt.NDArray[np.float32]


def _spec(model: str = DLIB, metric: Metric = Metric.L2, protection: int | None = None) -> GallerySpec:
    return GallerySpec("g", GalleryPurpose.WATCHLIST, model, DIM, metric, 0.6, protection_version=protection)


def unit_vectors(count: int, seed: int) -> Vectors:
    rows = np.random.default_rng(seed).normal(size=(count, DIM))
    units: Vectors = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return units


@pytest.fixture(scope="module")
def real_faces(lfw_embeddings: LfwEmbeddings) -> Vectors:
    _, vectors = lfw_embeddings.first_faces(lfw_embeddings.identities()[:60])
    assert len(vectors) >= 40
    return vectors


# -- the bound -------------------------------------------------------------------------------------


def test_real_dlib_faces_are_well_inside_the_models_bounds(real_faces: Vectors) -> None:
    bounds = bounds_of(_spec())
    assert not bounds.outside(real_faces).any()
    # A wide margin: a genuine face must never be refused.
    assert np.abs(real_faces).max() * 1.5 < bounds.max_component
    assert np.linalg.norm(real_faces, axis=1).max() * 1.5 < bounds.max_norm


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda v: v.__setitem__(17, 2e19), "component 17"),
        (lambda v: v.__setitem__(slice(None), 2e18), "component 0"),
        (lambda v: v.__setitem__(3, -1.01), "component 3"),
        (lambda v: v.__setitem__(slice(None), 0.5), "norm is above 3"),
    ],
)
def test_a_template_beyond_the_model_is_refused_naming_what_is_wrong(change: object, named: str) -> None:
    vector = unit_vectors(1, 1)[0].astype(np.float64)
    change(vector)  # type: ignore[operator]
    with pytest.raises(InvalidVector, match=named) as refused:
        check_templates(_spec(), vector)
    assert "2e+19" not in str(refused.value) and "2e+18" not in str(refused.value)


def test_a_batch_names_the_row_and_a_model_without_measurements_gets_the_generic_bound() -> None:
    rows = unit_vectors(5, 2).astype(np.float64)
    rows[3, 9] = 2e19
    with pytest.raises(InvalidVector, match="impostor 3: component 9"):
        check_templates(_spec(), rows, "impostor")
    unknown = _spec("test-model")
    assert bounds_of(unknown) == GENERIC
    check_templates(unknown, np.random.default_rng(0).normal(size=(4, DIM)) * 10)  # not unit: fine
    with pytest.raises(InvalidVector, match="component 9"):
        check_templates(unknown, rows)
    with pytest.raises(InvalidVector, match="norm is below"):
        check_templates(_spec("test-model", Metric.COSINE), np.zeros(DIM))


def test_stored_forms_are_screened_by_what_the_gallery_stores(real_faces: Vectors) -> None:
    # A protected gallery keeps the norm but may put it all in one component.
    transform = TemplateTransform.from_key(os.urandom(32), 1, DIM)
    protected = transform.apply(real_faces)
    spike = np.zeros((1, DIM), np.float32)
    spike[0, 4] = 1.4
    assert bounds_of(_spec()).outside(spike).any()
    assert not stored_bounds(_spec(protection=1)).outside(np.concatenate([protected, spike])).any()
    # A cosine gallery stores unit vectors: anything else was not written by this server.
    cosine = stored_bounds(_spec(metric=Metric.COSINE))
    units = real_faces / np.linalg.norm(real_faces, axis=1, keepdims=True)
    assert not cosine.outside(units).any()
    assert cosine.outside(np.stack([units[0] * 2, np.zeros(DIM, np.float32)])).all()


# -- rows an older version stored ---------------------------------------------------------------------


@pytest.fixture
def older(tmp_path: Path) -> Iterator[tuple[store.TemplateStore, bytes, Vectors]]:
    """A store as a version without bounds left it: genuine rows and poisoned ones."""
    key = os.urandom(32)
    template_store = store.TemplateStore.open(tmp_path / "db.sqlite3", store.TemplateSealer(key))
    spec = _spec()
    template_store.galleries.create(
        store.GalleryRecord("g", spec.purpose.value, DLIB, DIM, spec.metric.value, 0.6, created_at=0.0)
    )
    genuine = unit_vectors(300, 3)
    template_store.templates.insert("g", [(f"r{i}", v) for i, v in enumerate(genuine)])
    huge = genuine[0].copy()
    huge[5] = 2e19
    template_store.templates.insert(
        "g",
        [("bad-huge", huge), ("bad-large", np.full(DIM, 2e18, np.float32)), ("bad-range", genuine[1] * 4)],
    )
    yield template_store, key, genuine
    template_store.close()


def test_start_up_quarantines_stored_rows_beyond_the_model_and_serves_the_rest(
    older: tuple[store.TemplateStore, bytes, Vectors], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    template_store, key, genuine = older
    caplog.set_level(logging.INFO)
    matcher = Matcher(template_store, tmp_path / "snapshots", key[::-1])
    matcher.load()
    info = matcher.describe("g")
    assert (info.size, info.quarantined) == (300, 3)
    assert sorted(q.reference_id for q in template_store.quarantine.listing("g")) == [
        "bad-huge",
        "bad-large",
        "bad-range",
    ]
    results = matcher.identify("g", genuine[[0, 150, 299]], top_k=1)
    assert [r.candidates[0].reference_id for r in results] == ["r0", "r150", "r299"]
    # Logged by template id and count, never by vector or reference.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "quarantined 3 templates (out_of_bounds)" in logged
    assert "bad-huge" not in logged and "e+19" not in logged
    # The quarantined row is deleted like any other, and its reference id is free again.
    matcher.delete("g", "bad-huge")
    matcher.insert("g", "bad-huge", genuine[0])
    assert (matcher.describe("g").quarantined, matcher.count("g")) == (2, 301)
    assert matcher.save_snapshots() == 1
    matcher.close()

    again = Matcher(template_store, tmp_path / "snapshots", key[::-1])
    again.load()  # from the snapshot, which agrees with the store's live rows
    assert (again.describe("g").quarantined, again.count("g")) == (2, 301)
    again.close()


def test_a_snapshot_holding_poisoned_vectors_is_refused_and_the_rows_quarantined(
    older: tuple[store.TemplateStore, bytes, Vectors], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    template_store, key, _ = older
    snapshots = tmp_path / "snapshots"
    # The snapshot an older version wrote: every stored row, poisoned ones included.
    flat = FlatIndex(DIM, Metric.L2)
    for ids, vectors in template_store.templates.iterate("g"):
        flat.add(ids, vectors)
    IndexLoader(template_store, snapshots, key[::-1], IndexPolicy()).save(_spec(), GalleryIndex(flat))

    caplog.set_level(logging.INFO)
    matcher = Matcher(template_store, snapshots, key[::-1])
    matcher.load()
    assert "snapshot holds 3 templates beyond the model's bounds" in caplog.text
    assert (matcher.describe("g").quarantined, matcher.count("g")) == (3, 300)
    matcher.close()


# -- FAISS never sees them -------------------------------------------------------------------------------

_TRAIN_ON_POISON = textwrap.dedent(
    """
    import numpy as np
    from safepassage.matcher.gallery_index import GalleryIndex
    from safepassage.matcher.index import FlatIndex
    from safepassage.matcher.index_policy import IndexPolicy
    from safepassage.matcher.metric import Metric

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1500, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[7, 17] = 2e19  # one row that skipped every check on the way in
    flat = FlatIndex(128, Metric.L2)
    flat.add(np.arange(1500, dtype=np.int64), vectors)
    index = GalleryIndex(flat, policy=IndexPolicy(exact_below=1000), name="g")
    assert index.maybe_rebuild()
    assert index.wait_for_rebuild(120)
    print("kind", index.kind, "failed", index.failed_builds, "size", index.size)
    print("top", int(index.search(vectors[:1], 1).ids[0, 0]))
    """
)


def test_a_build_on_an_unsafe_vector_fails_and_keeps_the_current_index() -> None:
    # In a child process: where FAISS is handed such a vector, it aborts whatever process it is in.
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN_ON_POISON], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "kind flat failed 1 size 1500" in done.stdout
    assert "top 0" in done.stdout
    assert "vectors are not finite or beyond what FAISS can train on" in done.stderr
