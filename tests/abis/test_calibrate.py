"""`safepassage abis calibrate`: a gallery of real faces gets a threshold for targetFPIR (and a
background cohort), through the adapter's own store, with the adapter stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from safepassage.abis import load_abis_config
from safepassage.abis.service import AbisService
from safepassage.cli.main import main
from tests.lfw_embeddings import LfwEmbeddings


def test_calibrate_from_a_folder_of_strangers(  # type: ignore[no-untyped-def]
    tmp_path: Path, faces_dir: Path, model_dir: Path, lfw_embeddings: LfwEmbeddings, capsys
) -> None:
    config_file = tmp_path / "abis.toml"
    config_file.write_text(f'data_dir = "{tmp_path / "data"}"\n[faces]\nmodel_dir = "{model_dir}"\n')
    lfw = faces_dir / "lfw"
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:20]
    service = AbisService(load_abis_config(config_file))
    try:
        for person in people:
            vector = lfw_embeddings.first_face(person.name)
            assert vector is not None
            service.references.insert(person.name, vector)
    finally:
        service.close()
    strangers = tmp_path / "strangers"
    strangers.mkdir()
    for person in sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) == 1)[:44]:
        (strangers / f"{person.name}.jpg").symlink_to(next(person.glob("*.jpg")))
    assert (
        main(
            [
                "abis",
                "calibrate",
                "--config",
                str(config_file),
                "--impostors",
                str(tmp_path / "nowhere"),
                "--target-fpir",
                "0.1",
            ]
        )
        == 2
    )
    code = main(
        [
            "abis",
            "calibrate",
            "--config",
            str(config_file),
            "--impostors",
            str(strangers),
            "--target-fpir",
            "0.1",
            "--background-cohort",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "at 20 references" in out and "background cohort 22" in out
    service = AbisService(load_abis_config(config_file))
    try:
        described = service.matcher.describe(service.references.gallery_id)
        assert described.spec.target_fpir == pytest.approx(0.1) and described.background_cohort == 22
    finally:
        service.close()
