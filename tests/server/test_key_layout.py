"""Key files live apart from the data folder, so that a backup (a copy of it) does not carry them.

Issue 14, finding 4: with every key in <data_dir>/keys, a plain copy of the data folder held
the keys that decrypt it, and an erasure (old KEK versions destroyed in the live keyring)
could not reach the copy of the keyring in a backup.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from safepassage.cli.main import main as cli_main
from safepassage.enrolment import RecordVault
from safepassage.server.config import Config, ConfigError, load_config
from safepassage.server.key_layout import KeyLayoutError, check_key_layout, key_files, keys_inside


def _config(data_dir: Path, **overrides: object) -> Config:
    return load_config(None, {"storage.data_dir": str(data_dir), **overrides})


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_layout_puts_every_key_in_the_sibling_keys_folder(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = _config(data_dir)
    assert config.keys_dir == tmp_path / "data-keys"
    assert load_config().keys_dir == Path("var/safepassage-keys")
    assert all(path.parent == config.keys_dir for _, path in key_files(config))
    assert keys_inside(data_dir, config) == []
    assert len(keys_inside(config.keys_dir, config)) == len(key_files(config)) == 7


def test_keys_dir_from_a_file_is_taken_from_the_files_folder_and_explicit_files_win(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    file = tmp_path / "etc" / "safepassage.toml"
    file.write_text(
        '[storage]\ndata_dir = "data"\nkeys_dir = "secrets"\n'
        '[enrolment]\nkeyring_file = "/srv/hsm-mount/record-kek.json"\n'
    )
    config = load_config(file)
    assert config.keys_dir == tmp_path / "etc" / "secrets"
    assert config.template_key_path == tmp_path / "etc" / "secrets" / "template.key"
    assert config.audit_key_path.parent == config.station_key_path.parent == config.keys_dir
    assert config.keyring_path == Path("/srv/hsm-mount/record-kek.json")


def test_keys_dir_may_not_be_the_data_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keys_dir must be a folder of its own"):
        _config(tmp_path / "data", **{"storage.keys_dir": str(tmp_path / "data")})


def test_check_makes_the_keys_folder_owner_only(tmp_path: Path) -> None:
    """Before any module writes a key: some make missing parents with the umask's mode."""
    config = _config(tmp_path / "data")
    check_key_layout(config)
    assert _mode(config.keys_dir) == 0o700
    check_key_layout(config)  # again, with the folder there: nothing to do


def test_keyring_inside_the_data_folder_is_refused_unless_allowed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    keyring = data_dir / "record-kek.json"
    inside = _config(data_dir, **{"enrolment.keyring_file": str(keyring)})
    with pytest.raises(KeyLayoutError) as refused:
        check_key_layout(inside)
    message = str(refused.value)
    assert str(keyring) in message and "enrolment.allow_keyring_in_data_dir" in message
    assert "backup" in message and "erasure" in message
    allowed = _config(
        data_dir, **{"enrolment.keyring_file": str(keyring), "enrolment.allow_keyring_in_data_dir": True}
    )
    check_key_layout(allowed)


def test_the_log_head_file_inside_the_data_folder_is_refused(tmp_path: Path) -> None:
    """Cut back with the log, a head file beside it would vouch for the cut (issue 15, finding 7)."""
    data_dir = tmp_path / "data"
    head = data_dir / "audit" / "head.json"
    with pytest.raises(KeyLayoutError) as refused:
        check_key_layout(_config(data_dir, **{"audit.head_file": str(head)}))
    assert str(head) in str(refused.value) and "audit.head_file" in str(refused.value)
    check_key_layout(_config(data_dir, **{"audit.head_file": str(tmp_path / "elsewhere" / "head.json")}))


def test_keys_folder_reached_through_a_symbolic_link_into_the_data_folder_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "hidden-keys").mkdir(parents=True)
    (tmp_path / "keys-link").symlink_to(data_dir / "hidden-keys")
    config = _config(data_dir, **{"storage.keys_dir": str(tmp_path / "keys-link")})
    with pytest.raises(KeyLayoutError, match=r"enrolment\.allow_keyring_in_data_dir"):
        check_key_layout(config)
    # And a data folder reached through a link: the real paths are compared.
    (tmp_path / "data-link").symlink_to(data_dir)
    linked = _config(tmp_path / "data-link", **{"enrolment.keyring_file": str(data_dir / "kek.json")})
    with pytest.raises(KeyLayoutError, match="is inside the data folder"):
        check_key_layout(linked)


def _legacy_keys(data_dir: Path) -> list[Path]:
    legacy = data_dir / "keys"
    legacy.mkdir(parents=True, mode=0o700)
    files = [legacy / "template.key", legacy / "record-kek.json", legacy / "station-ed25519.pem"]
    for file in files:
        file.write_bytes(b"secret")
        file.chmod(0o600)
    return files


def test_legacy_layout_is_refused_with_the_command_that_moves_the_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    files = _legacy_keys(data_dir)
    config = _config(data_dir)
    with pytest.raises(KeyLayoutError) as refused:
        check_key_layout(config)
    message = str(refused.value)
    assert f"`mv {data_dir / 'keys'} {tmp_path / 'data-keys'}`" in message
    assert "record-kek.json" in message and "storage.keys_dir" in message
    assert all(file.exists() for file in files), "keys are never moved silently"
    assert not config.keys_dir.exists()

    config.keys_dir.mkdir()  # an empty keys folder made ahead: mv would nest, so the files are moved
    with pytest.raises(KeyLayoutError, match=r"mv \S+/keys/\* \S+-keys/ && rmdir \S+/keys"):
        check_key_layout(config)

    os.rmdir(config.keys_dir)
    os.rename(data_dir / "keys", config.keys_dir)  # what the operator runs
    check_key_layout(config)


def test_stale_keys_left_in_the_data_folder_beside_the_keys_in_use_are_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _legacy_keys(data_dir)
    config = _config(data_dir)
    config.keys_dir.mkdir(mode=0o700)
    config.keyring_path.write_bytes(b"in use")
    with pytest.raises(KeyLayoutError, match="still holds key files"):
        check_key_layout(config)


def _vault(config: Config) -> None:
    RecordVault.open(config.records_path).close()


def test_backup_warns_which_keys_must_not_go_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    config = _config(data_dir)
    _vault(config)
    out = tmp_path / "backups" / "vault.sqlite3"
    assert cli_main(["records", "backup", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    captured = capsys.readouterr()
    warning = captured.err.strip()
    assert warning.startswith("warning:") and "\n" not in warning
    assert str(config.keyring_path) in warning and "erasure" in warning


@pytest.mark.parametrize("where", ["keys_dir", "keys_subfolder"])
def test_backup_into_the_keys_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    data_dir = tmp_path / "data"
    config = _config(data_dir)
    _vault(config)
    folder = config.keys_dir if where == "keys_dir" else config.keys_dir / "old-backups"
    out = folder / "vault.sqlite3"
    assert cli_main(["records", "backup", "--data-dir", str(data_dir), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: refusing") and "\n" not in error
    assert str(config.keyring_path) in error
    assert not out.exists()


def test_backup_beside_a_keyring_named_in_the_config_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "safepassage.toml"
    file.write_text('[storage]\ndata_dir = "data"\n[enrolment]\nkeyring_file = "vaultkeys/kek.json"\n')
    config = load_config(file)
    _vault(config)
    out = tmp_path / "vaultkeys" / "nightly.sqlite3"
    assert cli_main(["records", "backup", "--config", str(file), "--out", str(out)]) == 2
    assert str(tmp_path / "vaultkeys" / "kek.json") in capsys.readouterr().err
    assert not out.exists()
    fine = tmp_path / "elsewhere" / "nightly.sqlite3"
    assert cli_main(["records", "backup", "--config", str(file), "--out", str(fine)]) == 0
    assert fine.exists()


# A real server (create_server) checks the layout before it reads or makes any key.


@pytest.mark.server
def test_server_refuses_to_start_with_the_keyring_in_the_data_folder(  # type: ignore[no-untyped-def]
    server_factory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    with pytest.raises(KeyLayoutError, match=r"enrolment\.allow_keyring_in_data_dir"):
        server_factory(data_dir, **{"enrolment.keyring_file": str(data_dir / "record-kek.json")})
    assert not (data_dir / "record-kek.json").exists()
    assert not (tmp_path / "data-keys").exists(), "refused before any key was made"


@pytest.mark.server
def test_server_starts_with_the_keyring_in_the_data_folder_when_allowed(  # type: ignore[no-untyped-def]
    server_factory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    keyring = data_dir / "record-kek.json"
    service, _, config = server_factory(
        data_dir, **{"enrolment.keyring_file": str(keyring), "enrolment.allow_keyring_in_data_dir": True}
    )
    assert keyring.exists() and config.keyring_path == keyring
    service.stop(grace_s=1)


@pytest.mark.server
def test_server_makes_its_keys_outside_the_data_folder(  # type: ignore[no-untyped-def]
    server_factory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    service, _, config = server_factory(data_dir)
    service.stop(grace_s=1)
    assert not (data_dir / "keys").exists()
    made = {path.name for path in config.keys_dir.iterdir()}
    assert {"template.key", "record-kek.json", "audit-log-ed25519.pem", "station-ed25519.pem"} <= made
    assert _mode(config.keys_dir) == 0o700
    key_names = {path.name for _, path in key_files(config)}
    assert not [path for path in data_dir.rglob("*") if path.name in key_names]


@pytest.mark.server
def test_server_refuses_the_legacy_layout(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "data"
    _legacy_keys(data_dir)
    with pytest.raises(KeyLayoutError, match=r"`mv \S+/data/keys \S+/data-keys`"):
        server_factory(data_dir)
