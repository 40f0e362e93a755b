"""`safepassage evaluate` as a user runs it: where the report goes, bad files, formats, progress.

Every run here is the installed command in a real process on real photos (a small LFW subset, and
files made from the shared photos under tmp_path: other formats, a truncated JPEG, text named .jpg).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pillow_heif
from PIL import Image

from safepassage.core.image_formats import IMAGE_SUFFIXES, READ_FORMATS
from safepassage.evaluation import data
from safepassage.evaluation.data import LabelledSet
from safepassage.evaluation.embed import EmbeddingRunner

REPO = Path(__file__).resolve().parents[2]
TRACKED_REPORT = REPO / "benchmarks" / "results" / "evaluation"
LIMIT = 12


def safepassage(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("safepassage")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "safepassage.cli.main"]
    return subprocess.run(
        [*command, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


def save(photo: Image.Image, path: Path, image_format: str) -> None:
    photo = photo.copy()
    photo.thumbnail((480, 480))  # these portraits are up to 2,204 px: smaller is as real, and quicker
    if image_format == "HEIF":
        buffer = BytesIO()
        pillow_heif.from_pillow(photo.convert("RGB")).save(buffer, quality=90)
        path.write_bytes(buffer.getvalue())
    elif image_format == "PGM":
        photo.convert("L").save(path, "PPM")
    else:
        photo.convert("RGB").save(path, image_format)


# One real face in every format the service reads (safepassage.face.image.READ_FORMATS), under a suffix the
# client's `import` sends; the WebP is named .jpg, as phones and messengers save them.
FORMATS = {
    "JPEG": ("a.jpeg", "JPEG"),
    "PNG": ("b.png", "PNG"),
    "WebP": ("c.jpg", "WEBP"),
    "GIF": ("d.gif", "GIF"),
    "BMP": ("e.bmp", "BMP"),
    "TIFF": ("f.tif", "TIFF"),
    "PGM/PPM": ("g.pgm", "PGM"),
    "JPEG 2000": ("h.jp2", "JPEG2000"),
    "HEIC/HEIF": ("i.heic", "HEIF"),
}


def test_evaluate_reads_every_format_the_client_sends(
    faces_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    assert data.SUFFIXES is IMAGE_SUFFIXES  # one list of names for `import`, `calibrate` and `evaluate`
    assert set(FORMATS) == set(READ_FORMATS)
    folder = tmp_path / "faces" / "biden"
    folder.mkdir(parents=True)
    with Image.open(faces_dir / "face_recognition" / "biden" / "biden.jpg") as photo:
        for name, image_format in FORMATS.values():
            assert Path(name).suffix in IMAGE_SUFFIXES
            save(photo, folder / name, image_format)
    labelled = LabelledSet.from_folder(tmp_path / "faces")
    assert labelled.unreadable == ()
    assert sorted(p.name for p in labelled.images()) == sorted(name for name, _ in FORMATS.values())
    runner = EmbeddingRunner(model_dir)
    embedded = runner.embed("onnx", labelled.images())
    assert runner.unreadable == {}
    assert [p.name for p in labelled.images() if embedded.vector(p) is None] == []


def test_bad_files_are_listed_and_skipped_and_the_run_completes(
    faces_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "faces"
    # A few LFW people, linked (never copied), and people whose photos come in other formats.
    for name, paths in LabelledSet.from_folder(faces_dir / "lfw").sample(16, seed=5).identities.items():
        (root / name).mkdir(parents=True)
        for path in paths:
            (root / name / path.name).symlink_to(path)
    shared = faces_dir / "face_recognition"
    made = {
        "kit_harington": [("john1.jpeg", "0.jpg", "WEBP"), ("john2.jpeg", "1.heic", "HEIF")],
        "rose_leslie": [("img1.jpg", "a.tif", "TIFF"), ("img2.jpg", "b.pgm", "PGM")],
        "biden": [("biden.jpg", "x.bmp", "BMP"), ("biden2.jpg", "y.jp2", "JPEG2000")],
    }
    for person, files in made.items():
        (root / person).mkdir()
        for source, name, image_format in files:
            with Image.open(shared / person / source) as photo:
                save(photo, root / person / name, image_format)
    whole = (shared / "obama" / "obama.jpg").read_bytes()
    (root / "rose_leslie" / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # sound header, half the data
    (root / "kit_harington" / "notes.jpg").write_text("not a photo at all\n")
    (root / "biden" / "empty.png").write_bytes(b"")
    good = sum(1 for p in root.rglob("*") if p.is_file()) - 3

    out = tmp_path / "out"
    run = safepassage(
        "evaluate",
        "--faces",
        str(root),
        "--out-dir",
        str(out),
        "--pipelines",
        "onnx",
        "--model-dir",
        str(model_dir),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    skipped_lines = [line for line in run.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped_lines) == 1, run.stderr
    assert skipped_lines[0].startswith("skipped 3 file(s) that are not images the service reads: ")
    for name in ("rose_leslie/cut.jpg", "kit_harington/notes.jpg", "biden/empty.png"):
        assert name in skipped_lines[0]
    figures = json.loads((out / "figures.json").read_text())
    listed = {entry["file"]: entry["reason"] for entry in figures["skipped_files"]}
    assert set(listed) == {"rose_leslie/cut.jpg", "kit_harington/notes.jpg", "biden/empty.png"}
    assert "truncated" in listed["rose_leslie/cut.jpg"] and all(listed.values())
    # Every other file was read, the WebP named .jpg and the HEIC among them, and a face found in it; the
    # truncated JPEG (a sound header) is out of the set, not counted as the pipeline's failure.
    onnx = figures["pipelines"]["onnx"]
    assert onnx["images"] == good and onnx["failures_to_acquire"] == 0
    summary = (out / "summary.md").read_text()
    assert "Files skipped (not images the service reads):" in summary
    assert "- `kit_harington/notes.jpg`: " in summary
    assert "Like for like" not in summary  # one pipeline: nothing to line up


def test_without_out_each_run_gets_a_new_folder_and_tracked_files_stay_as_they_are(
    faces_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    before = digests(TRACKED_REPORT)
    args = ("evaluate", "--faces", str(faces_dir), "--limit", str(LIMIT), "--pipelines", "onnx")
    first = safepassage(*args, "--model-dir", str(model_dir), cwd=tmp_path)
    second = safepassage(*args, "--model-dir", str(model_dir), cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert digests(TRACKED_REPORT) == before
    reports = sorted(p for p in (tmp_path / "evaluation-report").iterdir() if p.name != "embeddings")
    assert len(reports) == 2
    for folder, run in zip(reports, (first, second), strict=True):
        assert (folder / "figures.json").is_file() and (folder / "summary.md").is_file()
        assert f"report: {folder} (" in run.stdout
    # One embedding cache for runs without --out-dir: the second run embedded nothing.
    assert (tmp_path / "evaluation-report" / "embeddings" / "embeddings-onnx.npz").is_file()
    # Progress on stderr, one closing line per pipeline when stderr is not a terminal.
    closing = [line for line in first.stderr.splitlines() if line.startswith("embedding (onnx): ")]
    assert len(closing) == 1 and " images in " in closing[0], first.stderr
    assert ", 0 embedded now" not in closing[0]
    assert any(
        line.startswith("embedding (onnx): ") and ", 0 embedded now" in line
        for line in second.stderr.splitlines()
    )
