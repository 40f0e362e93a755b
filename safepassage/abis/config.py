"""The adapter's configuration: one TOML file, one typed tree (the server's tree is not involved).

The adapter is its own process with its own data folder, so it has its own file::

    data_dir = "/var/lib/safepassage-abis"
    gallery_id = "mosip-abis1"

    [broker]                      # MOSIP's ActiveMQ (Artemis or Classic), over STOMP
    host = "activemq.mosip.example"
    port = 61613
    username = "abis1"
    password_file = "secrets/broker-password"
    tls = true
    ca_file = "secrets/broker-ca.pem"
    inbound_queue = "mosip-to-abis1"
    outbound_queue = "abis1-to-mosip"

    [datashare]
    token_file = "secrets/mosip-jwt"                     # the auth manager's token for this partner
    partner_key_file = "secrets/abis-partner-key.pem"    # RSA private key registered with MOSIP
    partner_certificate_file = "secrets/abis-partner.pem"
    ca_file = "secrets/mosip-ca.pem"                     # omitted: the system's CAs

    [faces]
    model_dir = "var/models"

Relative paths are taken from the file's folder. Secrets are read from files, never written here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from safepassage.abis.errors import AbisConfigError
from safepassage.core.config_file import apply_overrides, read_tree, resolve_paths, validate

__all__ = ["AbisConfig", "BrokerConfig", "DatashareConfig", "FacesSection", "load_abis_config"]

MiB = 1 << 20


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(61613, ge=1, le=65535)
    username: str = ""
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    inbound_queue: str = "mosip-to-abis1"
    outbound_queue: str = "abis1-to-mosip"
    # Messages the broker may hand over before they are acknowledged: these are the pending jobs
    # pendingJobs counts (each is in the journal as soon as it arrives).
    prefetch: int = Field(64, ge=1, le=10_000)
    heartbeat_ms: int = Field(10_000, ge=0)
    reconnect_s: float = Field(2.0, gt=0)


class DatashareConfig(_Section):
    token_file: Path | None = None
    partner_key_file: Path | None = None
    partner_certificate_file: Path | None = None
    ca_file: Path | None = None
    timeout_s: float = Field(30.0, gt=0)


class FacesSection(_Section):
    model_dir: Path = Path("var/models")
    embedder: str = "dlib-resnet-v1"
    threads: int = Field(1, ge=1)
    max_image_bytes: int = Field(10 * MiB, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1024)


class AbisConfig(_Section):
    data_dir: Path = Path("var/abis")
    gallery_id: str = Field("mosip-abis1", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    # The duplicate threshold of a new gallery (None: the model's 1:1 default).
    threshold: float | None = None
    max_results: int = Field(10, ge=1, le=100)
    # Workers for inserts and identifies; ping, pendingJobs and referenceCount never wait for them.
    workers: int = Field(2, ge=1, le=64)
    journal_retention_days: float = Field(30.0, gt=0)
    broker: BrokerConfig = BrokerConfig()
    datashare: DatashareConfig = DatashareConfig()
    faces: FacesSection = FacesSection()

    @property
    def database_path(self) -> Path:
        return self.data_dir / "templates.db"

    @property
    def template_key_path(self) -> Path:
        return self.data_dir / "template.key"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal.db"

    @property
    def audit_log_path(self) -> Path:
        return self.data_dir / "audit.db"

    @property
    def audit_key_path(self) -> Path:
        return self.data_dir / "audit.key"


_PATHS = {
    "": ("data_dir",),
    "broker": ("password_file", "ca_file"),
    "datashare": ("token_file", "partner_key_file", "partner_certificate_file", "ca_file"),
    "faces": ("model_dir",),
}


def load_abis_config(path: Path, overrides: dict[str, object] | None = None) -> AbisConfig:
    raw = read_tree(path, AbisConfigError, "ABIS configuration")
    top = {k: v for k, v in _PATHS.items() if k}
    resolve_paths(raw, path.parent, top)
    if isinstance(raw.get("data_dir"), str) and not Path(str(raw["data_dir"])).is_absolute():
        raw["data_dir"] = str(path.parent / str(raw["data_dir"]))
    apply_overrides(raw, overrides)
    return validate(AbisConfig, raw, AbisConfigError, "ABIS configuration")
