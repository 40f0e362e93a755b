"""Loaders, both embedding pipelines with their cache, and identification through the real matcher,
on a small subset of ../shared/data/faces."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safepassage.evaluation.data import NEAR_DUPLICATES, LabelledSet, read_cohorts, read_pairs
from safepassage.evaluation.embed import EmbeddingRunner, Embeddings
from safepassage.evaluation.identification import SYNTHETIC_PREFIX, identify, make_protocol
from safepassage.matcher.search import pairwise_score


@pytest.fixture(scope="module")
def lfw_subset(faces_dir: Path) -> LabelledSet:
    return LabelledSet.from_folder(faces_dir / "lfw").sample(24, seed=3)


@pytest.fixture(scope="module")
def runner(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EmbeddingRunner:
    return EmbeddingRunner(model_dir, tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def onnx(runner: EmbeddingRunner, lfw_subset: LabelledSet) -> Embeddings:
    return runner.embed("onnx", lfw_subset.images())


def test_labelled_folder_skips_near_duplicates_and_small_identities(faces_dir: Path) -> None:
    people = LabelledSet.from_folder(faces_dir / "face_recognition")
    obama = {path.name for path in people.identities["obama"]}
    assert "obama.jpg" in obama and not obama & NEAR_DUPLICATES
    assert people.skipped_duplicates >= len(NEAR_DUPLICATES)
    assert len(LabelledSet.from_folder(faces_dir / "face_recognition", min_images=3)) < len(people)
    lfw = LabelledSet.from_folder(faces_dir / "lfw")
    assert len(lfw) == 835 and len(lfw.multi_image()) == 303
    sample = lfw.sample(24, seed=3)
    assert len(sample) == 24 and sample.multi_image() and sample.single_image()
    assert sample.identities == lfw.sample(24, seed=3).identities


def test_pairs_files_in_both_formats(faces_dir: Path) -> None:
    protocol = faces_dir / "lfw_protocol"
    subset = read_pairs(protocol / "pairs_folds1-2_subset.txt")
    assert len(subset) == 1180 and subset.missing == 0 and subset.folds == (1, 2)
    assert sum(p.genuine for p in subset) == 591
    first = subset.pairs[0]
    assert first.genuine and first.first.name == "Abel_Pacheco_0001.jpg" and first.second.is_file()
    full = read_pairs(protocol / "pairs.txt")
    # pairs.txt numbers folds by position (10 folds of 600); only folds 1-2 have images here.
    assert full.missing > 4000 and set(full.folds) <= {1, 2} and len(full) > 1000
    assert {(p.first, p.second) for p in full} >= {(p.first, p.second) for p in subset}


def test_cohorts_csv(tmp_path: Path) -> None:
    path = tmp_path / "cohorts.csv"
    path.write_text("identity,group\nAbel_Pacheco, a\n# a comment\nAmber_Tamblyn,b\n")
    assert read_cohorts(path) == {"Abel_Pacheco": "a", "Amber_Tamblyn": "b"}


def test_both_pipelines_embed_largest_face_with_quality_and_cache(
    runner: EmbeddingRunner, onnx: Embeddings, lfw_subset: LabelledSet, model_dir: Path, tmp_path: Path
) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    people = {name: paths for name, paths in lfw_subset.identities.items() if len(paths) >= 2}
    few = [path for paths in list(people.values())[:4] for path in paths[:2]]
    dlib = runner.embed("face_recognition", [*few, blank])
    for side in (runner.embed("onnx", [blank]), dlib):
        assert side.vector(blank) is None and side.quality(blank) is None
    for side in (onnx, dlib):
        assert side.model.dimension == 128 and not side.higher_is_closer
        vector = side.vector(few[0])
        assert vector is not None and vector.shape == (128,)
    # The dlib side is split by the ONNX side's quality of the same image.
    for path in few:
        quality = onnx.quality(path)
        assert quality is not None and 0 < quality <= 1 and dlib.quality(path) == quality
    # Both embed the same face: genuine pairs are closer than impostor pairs in each space.
    for side in (onnx, dlib):
        genuine = [side.score(few[i], few[i + 1]) for i in range(0, len(few), 2)]
        impostor = [side.score(few[i], few[(i + 2) % len(few)]) for i in range(0, len(few), 2)]
        assert max(g for g in genuine if g is not None) < min(i for i in impostor if i is not None)
    # A rerun is served from the .npz cache, keyed by file content, with the same vectors.
    again = EmbeddingRunner(model_dir, runner.cache_dir).embed("onnx", [*lfw_subset.images(), blank])
    assert again.embedded_now == 0 and onnx.embedded_now == len(lfw_subset.images())
    assert again.vector(blank) is None
    for path in lfw_subset.images():
        a, b = onnx.vector(path), again.vector(path)
        assert (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
        assert again.quality(path) == pytest.approx(onnx.quality(path))
    assert (runner.cache_dir or tmp_path).joinpath("embeddings-onnx.npz").is_file()


def test_open_set_identification_through_the_matcher(onnx: Embeddings, lfw_subset: LabelledSet) -> None:
    protocol = make_protocol(lfw_subset, seed=1)
    assert not set(protocol.enrolled) & {name for name, _ in protocol.nonmated_probes + protocol.distractors}
    base = len([p for p in protocol.enrolled.values() if onnx.vector(p) is not None])
    real = len([p for _, p in protocol.distractors if onnx.vector(p) is not None])
    runs = identify(onnx, protocol, [base, base + real, base + real + 30], seed=2)
    assert [r.gallery_size for r in runs] == [base, base + real, base + real + 30]
    assert [r.synthetic_distractors for r in runs] == [0, 0, 30] and runs[-1].real_distractors == real

    gallery = {name: onnx.vector(path) for name, path in protocol.enrolled.items()}
    first = runs[0]
    assert len(first.mated) == len(protocol.mated_probes)
    assert len(first.nonmated) == len(protocol.nonmated_probes)
    for search in first.mated + first.nonmated:
        probe = onnx.vector(search.probe)
        if probe is None:
            assert not search.face_found and search.scores == ()
            continue
        assert len(search.reference_ids) == min(10, base) and list(search.scores) == sorted(search.scores)
        # The matcher's best candidate is the brute-force nearest gallery face.
        best = min((pairwise_score(probe, v, onnx.metric), n) for n, v in gallery.items() if v is not None)
        assert search.reference_ids[0] == best[1] and search.scores[0] == pytest.approx(best[0], abs=1e-4)
    rank1, ranks, nonmated_top = first.open_set_arrays()
    assert (ranks == 1).mean() > 0.7  # random embeddings would give about 1/base
    assert np.all(rank1[ranks != 1] == np.inf) and np.all(np.isfinite(nonmated_top))
    assert np.median(rank1[ranks == 1]) < np.median(nonmated_top)  # mated are closer than strangers
    assert all(s.rank_of_true() == 0 for s in first.nonmated)
    labels = {r for s in runs[-1].mated + runs[-1].nonmated for r in s.reference_ids}
    drawn = {f"{SYNTHETIC_PREFIX}{i:06d}" for i in range(30)}
    assert {r for r in labels if r.startswith(SYNTHETIC_PREFIX)} <= drawn
    # Growing the gallery can only push the true identity down, never up.
    for small, large in itertools.pairwise(runs):
        for a, b in zip(small.mated, large.mated, strict=True):
            if a.rank_of_true() == 0:
                assert b.rank_of_true() == 0
            else:
                assert b.rank_of_true() == 0 or b.rank_of_true() >= a.rank_of_true()


def test_a_folder_of_other_formats_is_read_and_a_bad_file_listed_and_skipped(
    faces_dir: Path, tmp_path: Path
) -> None:
    # Files made here from the shared photos: WebPs named .jpg, PGMs, and a text file named .jpg.
    root = tmp_path / "faces"
    for name, sources in {"obama": ["obama.jpg", "obama2.jpg"], "biden": ["biden.jpg"]}.items():
        (root / name).mkdir(parents=True)
        for number, source in enumerate(sources):
            with Image.open(faces_dir / "face_recognition" / name / source) as photo:
                photo.convert("RGB").save(root / name / f"{number}.jpg", "WEBP")
                photo.convert("L").save(root / name / f"{number}.pgm", "PPM")
    (root / "obama" / "notes.jpg").write_text("not a photo at all\n")
    labelled = LabelledSet.from_folder(root)
    assert {p.name for p in labelled.identities["obama"]} == {"0.jpg", "0.pgm", "1.jpg", "1.pgm"}
    assert [(p.name, "look like text" in why) for p, why in labelled.unreadable] == [("notes.jpg", True)]


def test_a_folder_of_only_unreadable_files_says_why(tmp_path: Path) -> None:
    (tmp_path / "someone").mkdir()
    (tmp_path / "someone" / "a.pgm").write_bytes(b"P5\n")
    with pytest.raises(ValueError, match=r"1 files are not images the service reads, such as a\.pgm: PGM"):
        LabelledSet.from_folder(tmp_path)


def test_an_image_that_fails_to_decode_is_listed_not_a_crash(
    runner: EmbeddingRunner, faces_dir: Path, tmp_path: Path
) -> None:
    whole = (faces_dir / "face_recognition" / "obama" / "obama.jpg").read_bytes()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(whole[: len(whole) // 2])  # a sound header, half the pixels
    good = faces_dir / "face_recognition" / "biden" / "biden.jpg"
    embedded = runner.embed("face_recognition", [broken, good])
    assert embedded.vector(broken) is None and embedded.vector(good) is not None
    assert "JPEG image data is truncated" in runner.unreadable[broken]
