"""The server's configuration: one validated, typed tree, loaded once at start-up.

Every field has an embedded default, so `safepassage serve` runs with no file:
data under ./var/safepassage, TLS on with development certificates generated
on first run, a template key generated on first run. A TOML file overrides
any part; relative paths in it are taken from the file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from safepassage.core.config_file import apply_overrides, read_tree, resolve_paths, validate
from safepassage.core.errors import InvalidInput
from safepassage.matcher.index_policy import IndexPolicy
from safepassage.server.fishing import FishingSettings
from safepassage.server.identity import Role
from safepassage.server.limits import LimitSettings

MiB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ListenConfig(_Section):
    host: str = "127.0.0.1"
    # 0 picks a free port (tests); the bound port is logged and returned.
    port: int = Field(50051, ge=0, le=65535)
    max_workers: int = Field(16, ge=1, le=1024)
    max_concurrent_rpcs: int = Field(256, ge=1)
    max_message_bytes: int = Field(16 * MiB, ge=64 * 1024, le=256 * MiB)
    shutdown_grace_s: float = Field(10.0, ge=0)
    # A second port serving grpc.health.v1 Check alone, with no client certificate, for load
    # balancers and Kubernetes grpc probes (safepassage/server/health_listener.py). None: off, since
    # an unauthenticated listener is opened only when asked for. The probe calls the pod's IP, so a
    # Kubernetes deployment sets health_host = "0.0.0.0"; the loopback default suits a local agent.
    health_port: int | None = Field(None, ge=0, le=65535)
    health_host: str = "127.0.0.1"
    # True: TLS with the server's certificate (still no client certificate); Kubernetes' probe
    # speaks plaintext only, grpc_health_probe -tls and cloud load balancers speak TLS.
    health_tls: bool = False

    @model_validator(mode="after")
    def _health_apart(self) -> ListenConfig:
        if self.health_port is not None and self.health_port != 0 and self.health_port == self.port:
            raise ValueError("health_port must differ from port: the probe listener is a port of its own")
        return self


class TlsConfig(_Section):
    # Mutual TLS: clients present certificates from the deployment's CA (pki_dir, made
    # by `safepassage pki init`, or on first run when generate_dev_certs is true).
    # Plaintext is allowed only with allow_plaintext_on_localhost and a loopback host.
    enabled: bool = True
    allow_plaintext_on_localhost: bool = False
    # The deployment's PKI folder; empty: <data_dir>/pki.
    pki_dir: Path | None = None
    # Without TLS there is no certificate: plaintext callers act as this local role.
    plaintext_role: Role = Role.ADMIN
    # On first run with no PKI: make a development CA, server certificate and a
    # dev-admin client certificate. Deployments set this false and run `safepassage pki`.
    generate_dev_certs: bool = True
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


class StorageConfig(_Section):
    data_dir: Path = Path("var/safepassage")
    # Every key file the server makes or reads by default (template key, KEK keyring, transform
    # keyring, station, issuer, reader and transparency-log keys). Empty: the sibling folder
    # "<data_dir>-keys" (var/safepassage -> var/safepassage-keys), never inside data_dir: a copy
    # of the data folder (a backup) must not carry the keys that decrypt it, and erasure destroys
    # old key versions only in the live keyring (safepassage/server/key_layout.py).
    keys_dir: Path | None = None
    # 32-byte AES key for templates at rest (raw or base64). Empty: <keys_dir>/template.key.
    template_key_file: Path | None = None
    generate_template_key: bool = True
    # Index snapshots are written at shutdown and every this many seconds (0: only at shutdown).
    snapshot_interval_s: float = Field(300.0, ge=0)

    @model_validator(mode="after")
    def _keys_apart(self) -> StorageConfig:
        if self.keys_dir is not None and self.keys_dir == self.data_dir:
            raise ValueError(
                "keys_dir must be a folder of its own, not data_dir: backups would carry the keys"
            )
        return self


class RetentionConfig(_Section):
    # CCTV probes that produced a hit are kept for review this long unless an officer confirms them.
    camera_probe_hours: float = Field(24.0, gt=0)
    # Answers given on identify streams are kept this long, so an edge client's replay of a
    # query (after a reconnection or crash) gets the same answer without a second search.
    # An edge queue replaying later than this gets a fresh search. Default: 7 days.
    stream_replies_hours: float = Field(168.0, gt=0)
    purge_interval_s: float = Field(300.0, gt=0)


class WitnessConfig(_Section):
    # A witness (`safepassage audit witness serve`, run on another host with its own key) that
    # cosigns each tree head only if it extends the last one it cosigned: a log cut back, or
    # rewritten and re-signed by whoever holds the log key, is refused. Empty: no witness.
    url: str = ""
    # The witness's Ed25519 public key (PEM, its witness-public.pem): checks its cosignatures.
    public_key_file: Path | None = None
    # True: refuse to start when the witness cannot say which head it last cosigned. False: start
    # with the head file's check alone, and publish once the witness is back.
    required: bool = False
    timeout_s: float = Field(10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _key_with_url(self) -> WitnessConfig:
        if self.url and self.public_key_file is None:
            raise ValueError("a witness url needs the witness's public_key_file")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError("a witness url starts with http:// or https://")
        if self.required and not self.url:
            raise ValueError("a required witness needs its url")
        return self


class AuditConfig(_Section):
    # Sign a tree head of the transparency log this often (and at shutdown), record it in
    # head_file and publish it to the witness.
    tree_head_interval_s: float = Field(60.0, gt=0)
    # The log's Ed25519 signing key. Empty: <keys_dir>/audit-log-ed25519.pem. Keep it out of the
    # data folder: whoever holds it and the log can rewrite the log and re-sign it.
    key_file: Path | None = None
    # The newest tree head the server published, kept outside the log's database (and the data
    # folder); start-up refuses a log shorter than it or inconsistent with it.
    # Empty: <keys_dir>/audit-log-head.json.
    head_file: Path | None = None
    witness: WitnessConfig = WitnessConfig()


class FacesConfig(_Section):
    # "onnx": the pipeline the edge runs too (safepassage.face.pipeline), from the model pack;
    # "dlib": face_recognition's dlib models, kept as the reference.
    backend: Literal["onnx", "dlib"] = "onnx"
    # Built by `python -m safepassage.model_pack.build` (run by `make setup`).
    model_dir: Path = Path("var/models")
    embedder: str = "dlib-resnet-v1"
    max_image_bytes: int = Field(10 * MiB, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=10_000)
    # Memory all requests together may spend on decoded images at once (safepassage/server/
    # decode_budget.py): an image takes ~12 bytes a pixel (24 with transparency), read from its
    # header before decoding. A request waits up to decode_wait_s for its share, then is refused
    # with RESOURCE_EXHAUSTED. 1 GiB: two 40 MP photos at once, or forty 1080p frames.
    decode_budget_bytes: int = Field(1024 * MiB, ge=16 * MiB)
    decode_wait_s: float = Field(5.0, ge=0, le=600)
    # dlib backend: images larger than this are downscaled for detection.
    detection_max_side: int = Field(1600, ge=320)
    # onnx backend: the detector runs on the frame downscaled to this side.
    onnx_detect_max_side: int = Field(640, ge=64)
    min_face: int = Field(20, ge=8)
    detector_score_threshold: float = Field(0.5, gt=0, lt=1)
    threads: int = Field(1, ge=1, le=64)


class IndexConfig(_Section):
    """Which index a gallery gets (matcher.index_policy): exact below a size, approximate above."""

    # Galleries smaller than this are searched exactly (and go back to exact below half of it).
    exact_below: int = Field(250_000, ge=0)
    # Memory one gallery's index may take; over it inserts are refused (use the milvus backend).
    memory_budget_gib: float = Field(16.0, gt=0)
    # An approximate index is retrained when its gallery has grown by this factor.
    rebuild_growth: float = Field(2.0, gt=1.0, le=100.0)
    # Codes the approximate index scans: 8-bit scalar, product-quantised, or float.
    codes: Literal["sq8", "pq", "flat"] = "sq8"
    # Inverted lists = list_factor x sqrt(size); a search probes sqrt(probe_scale x lists) of them.
    list_factor: float = Field(2.0, gt=0, le=64)
    probe_scale: float = Field(8.0, gt=0, le=1_000_000)
    # Candidates re-ranked by exact distance before any decision.
    rerank: int = Field(64, ge=1, le=10_000)
    # FAISS threads for training a rebuilt index in the background (0: OpenMP's default).
    build_threads: int = Field(1, ge=0, le=64)

    def policy(self) -> IndexPolicy:
        return IndexPolicy(
            exact_below=self.exact_below,
            memory_budget_bytes=int(self.memory_budget_gib * 1024**3),
            rebuild_growth=self.rebuild_growth,
            codes=self.codes,
            list_factor=self.list_factor,
            probe_scale=self.probe_scale,
            rerank=self.rerank,
            build_threads=self.build_threads,
        )


class BatchingConfig(_Section):
    """Micro-batching of concurrent identifications (safepassage.matcher.batcher)."""

    enabled: bool = True
    # How long the first waiting search waits for others to join its batch.
    max_wait_ms: float = Field(2.0, gt=0, le=50)
    max_batch: int = Field(64, ge=1, le=4096)
    # Threads that run batches, and FAISS (OpenMP) threads of each batch search. Keep
    # workers x threads within the cores: oversubscribed OpenMP threads slow down sharply.
    workers: int = Field(1, ge=1, le=64)
    threads: int = Field(1, ge=1, le=64)
    # FAISS searches batches of at least this many probes with matrix products (BLAS); smaller
    # ones (a lone probe is 5x slower through BLAS) keep the sequential scan. safepassage/matcher/batcher.py.
    blas_min_batch: int = Field(8, ge=1, le=100_000)


class MilvusConfig(_Section):
    """The milvus backend (docs/milvus.md): Milvus Lite in a file, or a Milvus server or cluster."""

    # Empty: Milvus Lite in <data_dir>/milvus.db. Else e.g. "https://milvus.example:19530".
    uri: str = ""
    # A file holding the token ("user:password" or an API key); None: no authentication (Lite).
    token_file: Path | None = None
    db_name: str = ""
    # Milvus's own index types and parameters: FLAT is exact; IVF_FLAT {"nlist"} / {"nprobe"};
    # HNSW {"M", "efConstruction"} / {"ef"}.
    index_type: str = Field("FLAT", pattern=r"^[A-Z][A-Z0-9_]{0,31}$")
    index_params: dict[str, int | float | str] = {}
    search_params: dict[str, int | float | str] = {}
    timeout_s: float = Field(30.0, gt=0)
    # TLS to a Milvus server: its CA or certificate, and for mutual TLS a client certificate and key.
    tls_server_pem: Path | None = None
    tls_server_name: str = ""
    tls_ca_pem: Path | None = None
    tls_client_pem: Path | None = None
    tls_client_key: Path | None = None


class TemplateProtectionConfig(_Section):
    """Cancelable templates (matcher.protection): a secret orthonormal transform per deployment."""

    # The deployment's transform keys; None: <keys_dir>/template-transform.json.
    keyring_file: Path | None = None
    # Made on first start when missing (deployments may provision it instead).
    generate_key: bool = True
    # Every new gallery protected, whatever CreateGallery asks.
    protect_all: bool = False


class MatchingConfig(_Section):
    # FAISS threads per search call; parallelism comes from concurrent calls.
    search_threads: int = Field(1, ge=1, le=64)
    # "faiss": indexes in this process; "milvus": every gallery in Milvus (see docs/milvus.md).
    backend: Literal["faiss", "milvus"] = "faiss"
    index: IndexConfig = IndexConfig()
    batching: BatchingConfig = BatchingConfig()
    milvus: MilvusConfig = MilvusConfig()
    template_protection: TemplateProtectionConfig = TemplateProtectionConfig()
    max_top_k: int = Field(100, ge=1, le=10_000)
    max_restrict_to: int = Field(10_000, ge=1)
    max_batch: int = Field(10_000, ge=1)
    # Captures one subject may hold (searched by their mean template; README "Several captures").
    max_captures: int = Field(10, ge=1, le=100)
    # Templates committed per store transaction during a bulk import.
    bulk_commit_size: int = Field(1000, ge=1)
    max_bulk_errors_reported: int = Field(1000, ge=0)


class EnrolmentConfig(_Section):
    """Protected identity records: keys, credentials, PIN lockout, referral channels."""

    # Who signs consent and erasure receipts (the enrolling station) and issues credentials.
    station_id: str = Field("safepassage-dev-station", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    issuer_id: str = Field("safepassage-dev-issuer", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    # The key-encryption keyring (file backend); None: <keys_dir>/record-kek.json.
    keyring_file: Path | None = None
    # The server refuses to start with the keyring inside data_dir: a backup of the data folder
    # would carry it, and an erasure could not reach the old key versions in that copy.
    allow_keyring_in_data_dir: bool = False
    # Reader public keys (PEM) of agencies whose officers verify credentials offline.
    agency_reader_keys: list[Path] = []
    credential_valid_days: int = Field(730, ge=1, le=3650)
    pin_max_failures: int = Field(5, ge=1, le=100)
    pin_lock_s: float = Field(900.0, ge=0)
    # channel -> caseworker client ids allowed to read its referrals (unlisted channels: every caseworker).
    referral_readers: dict[str, list[str]] = {}
    # Enrol only faces that passed a head-turn check (the console's webcam, a kiosk); a caseworker's own
    # "supervised" statement does not count. Off: a photo may be enrolled too (the receipt says "none").
    require_face_liveness: bool = False


class ConsoleConfig(_Section):
    """The web console (safepassage/console/): HTTPS on a port of its own, beside the gRPC port.

    People log in with their own client certificates from the deployment's CA; the console acts for
    them through the same access checks and transparency log as any gRPC caller (docs/console.md).
    It needs TLS and the console's certificate (made with a development PKI, else `safepassage pki
    issue-console`); without either it stays off and the start-up log says why.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    # 0: a free port (`safepassage serve --port 0` asks for one here too); the URL is logged at start.
    port: int = Field(8443, ge=0, le=65535)
    # The message catalogue: safepassage/console/locale/<language>/LC_MESSAGES/console.po.
    language: str = Field("en", pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")
    # The largest probe image the desk takes (the service's faces.max_image_bytes still applies).
    max_upload_bytes: int = Field(10 * MiB, ge=64 * 1024, le=64 * MiB)
    # How long a page's form stays usable (its CSRF token is bound to the person's certificate).
    form_hours: float = Field(8.0, gt=0, le=24 * 7)
    # Kiosk mode (/kiosk): an untouched screen goes back to the start and forgets the holder's record;
    # its forms (and the holder's proof they carry, sealed) are dead a minute after that.
    kiosk_idle_seconds: int = Field(90, ge=5, le=900)


class CctvConfig(_Section):
    """Live CCTV identification: whether the server may sign authorisations for administrators.

    Off by default: an authority signs with its own admin certificate's key off the server
    (`safepassage authorise`), so the service that runs the searches cannot allow them itself. A
    deployment that sets `signing_key_file` (and the admin certificate it belongs to) lets an
    administrator sign in the console (AdministrationService.SignAuthorisation); whoever takes
    the server then holds that key too (docs/console.md, "CCTV authorisations").
    """

    # The authority's EC private key (PKCS#8 PEM, 0600) and its admin-role client certificate of
    # this deployment's CA (`safepassage pki issue cctv-authority --role admin --bundle ...`).
    signing_key_file: Path | None = None
    signing_certificate_file: Path | None = None

    @model_validator(mode="after")
    def _key_with_certificate(self) -> CctvConfig:
        if (self.signing_key_file is None) != (self.signing_certificate_file is None):
            raise ValueError("cctv.signing_key_file and cctv.signing_certificate_file go together")
        return self


class TravelDocumentsConfig(_Section):
    """ePassport chips as the reference of a 1:1 verification (TravelDocumentService.VerifyDocument).

    Passive authentication trusts the CSCA certificates in `csca_dir` (PEM or DER files, and ICAO
    master lists whose signer one of those CSCAs issued: safepassage/travel_document/trust_store.py),
    read at start-up. None: no CSCA configured, and a request with a SOD is refused.
    """

    csca_dir: Path | None = None
    # True: a request without a SOD is refused (FAILED_PRECONDITION) instead of answered NOT_CHECKED.
    require_passive_authentication: bool = False


class Config(_Section):
    listen: ListenConfig = ListenConfig()
    tls: TlsConfig = TlsConfig()
    storage: StorageConfig = StorageConfig()
    faces: FacesConfig = FacesConfig()
    matching: MatchingConfig = MatchingConfig()
    retention: RetentionConfig = RetentionConfig()
    audit: AuditConfig = AuditConfig()
    limits: LimitSettings = LimitSettings()
    fishing: FishingSettings = FishingSettings()
    enrolment: EnrolmentConfig = EnrolmentConfig()
    console: ConsoleConfig = ConsoleConfig()
    cctv: CctvConfig = CctvConfig()
    travel_documents: TravelDocumentsConfig = TravelDocumentsConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _console_apart(self) -> Config:
        ports = {self.listen.port, self.listen.health_port}
        if self.console.enabled and self.console.port != 0 and self.console.port in ports:
            raise ValueError("console.port must differ from listen.port and listen.health_port")
        return self

    @property
    def keys_dir(self) -> Path:
        return self.storage.keys_dir or default_keys_dir(self.storage.data_dir)

    @property
    def template_key_path(self) -> Path:
        return self.storage.template_key_file or self.keys_dir / "template.key"

    @property
    def database_path(self) -> Path:
        return self.storage.data_dir / "safepassage.sqlite3"

    @property
    def snapshot_dir(self) -> Path:
        return self.storage.data_dir / "snapshots"

    @property
    def pki_dir(self) -> Path:
        return self.tls.pki_dir or self.storage.data_dir / "pki"

    @property
    def probes_path(self) -> Path:
        return self.storage.data_dir / "camera_probes.sqlite3"

    @property
    def reference_images_path(self) -> Path:
        return self.storage.data_dir / "reference_images.sqlite3"

    @property
    def stream_replies_path(self) -> Path:
        return self.storage.data_dir / "stream_replies.sqlite3"

    @property
    def audit_log_path(self) -> Path:
        return self.storage.data_dir / "audit" / "transparency.sqlite3"

    @property
    def audit_key_path(self) -> Path:
        return self.audit.key_file or self.keys_dir / "audit-log-ed25519.pem"

    @property
    def audit_head_path(self) -> Path:
        return self.audit.head_file or self.keys_dir / "audit-log-head.json"

    @property
    def records_path(self) -> Path:
        return self.storage.data_dir / "protected_records.sqlite3"

    @property
    def keyring_path(self) -> Path:
        return self.enrolment.keyring_file or self.keys_dir / "record-kek.json"

    @property
    def transform_keyring_path(self) -> Path:
        configured = self.matching.template_protection.keyring_file
        return configured or self.keys_dir / "template-transform.json"

    @property
    def milvus_uri(self) -> str:
        return self.matching.milvus.uri or str(self.storage.data_dir / "milvus.db")

    @property
    def station_key_path(self) -> Path:
        return self.keys_dir / "station-ed25519.pem"

    @property
    def issuer_key_path(self) -> Path:
        return self.keys_dir / "credential-issuer-ed25519.pem"

    @property
    def reader_key_path(self) -> Path:
        return self.keys_dir / "credential-reader-x25519.key"


def default_keys_dir(data_dir: Path) -> Path:
    """The sibling "<data_dir>-keys": beside the data folder, so copying that folder leaves the keys."""
    folder = data_dir if data_dir.name not in ("", ".", "..") else data_dir.resolve()
    if not folder.name:
        raise ConfigError(f"storage.data_dir {data_dir} has no name to put -keys after; set storage.keys_dir")
    return folder.with_name(f"{folder.name}-keys")


class ConfigError(InvalidInput):
    """The configuration file is unreadable or invalid."""


_PATHS = {
    "storage": ("data_dir", "keys_dir", "template_key_file"),
    "tls": ("pki_dir",),
    "faces": ("model_dir",),
    "enrolment": ("keyring_file", "agency_reader_keys"),
    "matching.milvus": ("token_file", "tls_server_pem", "tls_ca_pem", "tls_client_pem", "tls_client_key"),
    "matching.template_protection": ("keyring_file",),
    "audit": ("key_file", "head_file"),
    "audit.witness": ("public_key_file",),
    "travel_documents": ("csca_dir",),
    "cctv": ("signing_key_file", "signing_certificate_file"),
}


def load_config(path: Path | None = None, overrides: dict[str, object] | None = None) -> Config:
    """The embedded defaults, overridden by a TOML file and then by `overrides`."""
    raw: dict[str, object] = {}
    if path is not None:
        raw = read_tree(path, ConfigError, "configuration")
        resolve_paths(raw, path.parent.resolve(), _PATHS)
    apply_overrides(raw, overrides)
    return validate(Config, raw, ConfigError, "configuration")
