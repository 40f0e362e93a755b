"""Offline holder checks on real LFW faces with the ONNX pipeline: the holder passes, someone else does not.

Walter Mondale's photo 4 is "enrolled" (its embedding goes into the credential);
his photo 8 is the live capture at the border, and Vaclav Havel's photo 7 is
another person presenting a copy of the same credential.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from safepassage.camera_edge.holder_check import HolderCheck, HolderCheckResult
from safepassage.cli.credential_command import add_credential_parser, run_credential
from safepassage.core.metric import Metric
from safepassage.credential import (
    CredentialExpired,
    HolderMismatch,
    IssuerKey,
    ModelMismatch,
    NotForThisReader,
    ReaderKey,
    TrustedIssuers,
    issue,
    qr_png,
)
from safepassage.face.errors import PipelineInputError
from safepassage.face.pipeline import FacePipeline, PipelineSettings, RgbImage, load_pipeline

HOLDER_ENROLLED = "lfw/Walter_Mondale/Walter_Mondale_0004.jpg"
HOLDER_LIVE = "lfw/Walter_Mondale/Walter_Mondale_0008.jpg"
SOMEONE_ELSE = "lfw/Vaclav_Havel/Vaclav_Havel_0007.jpg"
NO_FACE = "group/dlib/dogs.jpg"
TWO_PEOPLE = "group/face_recognition/two_people.jpg"
THRESHOLD = 0.6  # the gallery threshold of dlib-resnet-v1 (L2 distance)
RECORD_ID = "rec-2b9d6c1e-0a4f-4e51-8c3b-5d7a9f13e260"


def rgb(path: Path) -> RgbImage:
    image = cv2.imread(str(path))
    assert image is not None, path
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


@pytest.fixture(scope="module")
def pipeline(model_dir: Path) -> FacePipeline:
    return load_pipeline(PipelineSettings(model_dir=model_dir))


@pytest.fixture(scope="module")
def issuer() -> IssuerKey:
    return IssuerKey.generate("la-strada")


@pytest.fixture(scope="module")
def officer() -> ReaderKey:
    return ReaderKey.generate()


@pytest.fixture(scope="module")
def check(pipeline: FacePipeline, issuer: IssuerKey, officer: ReaderKey) -> HolderCheck:
    return HolderCheck(pipeline, TrustedIssuers([issuer.public]), officer)


@pytest.fixture(scope="module")
def enrolled(pipeline: FacePipeline, faces_dir: Path) -> np.ndarray:
    faces = pipeline.process(rgb(faces_dir / HOLDER_ENROLLED))
    assert len(faces) == 1
    return faces[0].embedding


def credential_for(
    issuer: IssuerKey,
    officer: ReaderKey,
    template: np.ndarray,
    model: str = "dlib-resnet-v1",
    metric: Metric = Metric.L2,
    now: datetime | None = None,
) -> str:
    server = ReaderKey.generate()  # the server is one more reader
    readers = [officer.public, server.public]
    return issue(issuer, readers, RECORD_ID, template, model, metric, THRESHOLD, timedelta(days=365), now)


def test_the_default_embedder_is_dlib_by_l2(pipeline: FacePipeline) -> None:
    spec = pipeline.spec
    assert (spec.name, spec.metric, spec.default_threshold) == ("dlib-resnet-v1", "l2", THRESHOLD)


def test_the_holder_is_accepted_offline(
    check: HolderCheck,
    issuer: IssuerKey,
    officer: ReaderKey,
    enrolled: np.ndarray,
    faces_dir: Path,
    pipeline: FacePipeline,
) -> None:
    text = credential_for(issuer, officer, enrolled)
    live = rgb(faces_dir / HOLDER_LIVE)
    result = check.check(text, live)
    assert isinstance(result, HolderCheckResult)
    assert result.issuer_id == "la-strada" and result.metric is Metric.L2
    assert result.threshold == THRESHOLD and result.score < THRESHOLD  # a distance: lower is closer
    expected = float(np.linalg.norm(pipeline.process(live)[0].embedding - enrolled))
    assert result.score == pytest.approx(expected, abs=1e-5)
    assert result.info.model == "dlib-resnet-v1" and result.info.credential_id == result.credential_id
    assert result.record_id == RECORD_ID
    assert RECORD_ID not in repr(result) and "template" not in repr(result)
    assert result.line().startswith(f"VERIFIED credential {result.credential_id} issued by la-strada")


def test_someone_else_with_the_holders_credential_is_refused(
    check: HolderCheck, issuer: IssuerKey, officer: ReaderKey, enrolled: np.ndarray, faces_dir: Path
) -> None:
    text = credential_for(issuer, officer, enrolled)
    with pytest.raises(HolderMismatch, match=r"does not match .* score 0\.[6-9]"):
        check.check(text, rgb(faces_dir / SOMEONE_ELSE))


def test_a_template_of_another_model_is_refused_before_the_pipeline_runs(
    check: HolderCheck, issuer: IssuerKey, officer: ReaderKey, enrolled: np.ndarray, faces_dir: Path
) -> None:
    frames = check.pipeline.times.frames
    text = credential_for(issuer, officer, enrolled, model="arcface-r100")
    with pytest.raises(ModelMismatch, match="arcface-r100"):
        check.check(text, rgb(faces_dir / HOLDER_LIVE))
    cosine = credential_for(issuer, officer, enrolled, metric=Metric.COSINE)
    with pytest.raises(ModelMismatch, match="cosine"):
        check.check(cosine, rgb(faces_dir / HOLDER_LIVE))
    assert check.pipeline.times.frames == frames


def test_the_live_capture_must_show_exactly_one_face(
    check: HolderCheck, issuer: IssuerKey, officer: ReaderKey, enrolled: np.ndarray, faces_dir: Path
) -> None:
    text = credential_for(issuer, officer, enrolled)
    with pytest.raises(PipelineInputError, match="no face"):
        check.check(text, rgb(faces_dir / NO_FACE))
    with pytest.raises(PipelineInputError, match="2 faces"):
        check.check(text, rgb(faces_dir / TWO_PEOPLE))


def test_credential_checks_come_before_the_face(
    check: HolderCheck, issuer: IssuerKey, officer: ReaderKey, enrolled: np.ndarray, faces_dir: Path
) -> None:
    live = rgb(faces_dir / HOLDER_LIVE)
    old = credential_for(issuer, officer, enrolled, now=datetime.now(UTC) - timedelta(days=400))
    with pytest.raises(CredentialExpired):
        check.check(old, live)
    for_others = credential_for(issuer, ReaderKey.generate(), enrolled)
    with pytest.raises(NotForThisReader):
        check.check(for_others, live)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="safepassage")
    add_credential_parser(parser.add_subparsers(dest="command", required=True))
    return run_credential(parser.parse_args(argv))


def test_the_command_line_verifies_a_qr_code_offline(
    tmp_path: Path,
    issuer: IssuerKey,
    enrolled: np.ndarray,
    faces_dir: Path,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reader_file = tmp_path / "device" / "reader.key"
    assert run_cli(["credential", "reader-key", "--out", str(reader_file)]) == 0
    public = tmp_path / "device" / "reader.pub.pem"
    assert str(public) in capsys.readouterr().out and public.is_file()
    officer = ReaderKey.load(reader_file)
    issuer_pem = tmp_path / "la-strada.pub.pem"
    issuer_pem.write_bytes(issuer.public_pem())
    text = credential_for(issuer, officer, enrolled)
    card = tmp_path / "card.png"
    card.write_bytes(qr_png(text))
    text_file = tmp_path / "card.txt"
    text_file.write_text(text + "\n")
    common = [
        "--issuer-key",
        str(issuer_pem),
        "--reader-key",
        str(reader_file),
        "--model-dir",
        str(model_dir),
    ]

    assert (
        run_cli(["credential", "verify", "--qr", str(card), *common, "--face", str(faces_dir / HOLDER_LIVE)])
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("VERIFIED credential ") and "issued by la-strada" in out and "valid until" in out
    assert RECORD_ID not in out

    face = str(faces_dir / SOMEONE_ELSE)
    assert run_cli(["credential", "verify", "--text", str(text_file), *common, "--face", face]) == 1
    captured = capsys.readouterr()
    assert "VERIFIED" not in captured.out and "does not match" in captured.err

    other_issuer = tmp_path / "other.pub.pem"
    other_issuer.write_bytes(IssuerKey.generate("other").public_pem())
    untrusted = ["--issuer-key", str(other_issuer), *common[2:]]
    assert run_cli(["credential", "verify", "--text", str(text_file), *untrusted, "--face", face]) == 1
    assert "not trusted" in capsys.readouterr().err
