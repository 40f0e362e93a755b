"""What the console is started with: its address, its TLS files, and how it reaches the service.

The composition root (safepassage/app.py) makes these from the server's configuration and the PKI
(safepassage/server/console_credentials.py): the console itself reads no configuration file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ConsoleSettings"]


@dataclass(frozen=True)
class ConsoleSettings:
    host: str
    port: int  # 0: a free one
    language: str  # the catalogue: locale/<language>/LC_MESSAGES/console.po
    max_upload_bytes: int
    form_lifetime_s: float  # how long a page's form token stays valid
    # HTTPS: the server's certificate and key (the console serves as the same host), and the CA
    # whose client certificates it asks browsers for.
    server_cert_file: Path
    server_key_file: Path
    ca_pem: bytes
    # The loopback channel to the gRPC port: where, the name its certificate holds, and the
    # console's own certificate and key (pinned by the server as the one peer that may forward).
    service_target: str
    service_name: str
    console_cert_pem: bytes
    console_key_pem: bytes = field(repr=False)
    max_message_bytes: int = 16 * 1024 * 1024
    call_timeout_s: float = 60.0
    kiosk_idle_s: float = 90.0  # kiosk mode: an untouched screen returns to its start and forgets
