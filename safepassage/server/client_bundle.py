"""A client's credentials as one folder to hand over: its key, its certificate and the CA certificate.

`safepassage pki issue ID --role ROLE --bundle PATH` writes::

    PATH/               0700, new (an existing path is refused: it may be someone else's)
        ca.pem          the deployment's CA certificate
        clients/ID.pem      the client's certificate
        clients/ID-key.pem  its private key (0600): the only copy there is

The layout is a PKI folder's, so the bundle is what the command line takes as
``--pki-dir PATH --client ID`` and what a camera's configuration names as
``ca``, ``cert`` and ``key``. The bundle must lie outside the PKI folder: the
point is that the PKI folder, which holds the CA key, keeps no client's key.
The folder is reserved before the certificate is issued, so a bad destination
costs no certificate; a failed issue gives the empty folder back.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from safepassage.core import atomic_file
from safepassage.core.private_files import PRIVATE_FOLDER_MODE, make_private_folder
from safepassage.server.pki_folder import InvalidCertificateRequest, PkiAlreadyExists, PkiPaths
from safepassage.server.pki_issuance import IssuedCert

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientBundle:
    """A new, owner-only folder reserved for one client's credentials."""

    paths: PkiPaths

    @property
    def folder(self) -> Path:
        return self.paths.folder

    @classmethod
    def reserve(cls, destination: Path, pki_folder: Path) -> ClientBundle:
        """Make the empty bundle folder (0700), refusing one inside the PKI folder or already there."""
        if destination.expanduser().resolve().is_relative_to(pki_folder.expanduser().resolve()):
            raise InvalidCertificateRequest(
                f"the bundle {destination} is inside the PKI folder {pki_folder}, which keeps no client keys:"
                " write it elsewhere"
            )
        make_private_folder(destination.parent)
        try:
            destination.mkdir(mode=PRIVATE_FOLDER_MODE)
        except FileExistsError:
            raise PkiAlreadyExists(
                f"{destination} already exists; a bundle is written to a new folder only"
            ) from None
        except OSError as error:
            raise InvalidCertificateRequest(
                f"cannot make the bundle {destination}: {error.strerror}"
            ) from None
        os.chmod(destination, PRIVATE_FOLDER_MODE)  # whatever the umask took
        return cls(PkiPaths(destination))

    def release(self) -> None:
        """Give back the folder of an issue that failed (only while it is still empty)."""
        try:
            self.folder.rmdir()
        except OSError:
            log.warning("could not remove the unused bundle folder %s", self.folder)

    def write(self, issued: IssuedCert, ca_pem: bytes) -> None:
        """Write the CA certificate, the client's certificate and its key into the folder."""
        make_private_folder(self.paths.clients)
        atomic_file.replace(self.paths.ca_cert, ca_pem, mode=0o644)
        atomic_file.replace(self.paths.client_cert(issued.client_id), issued.cert_pem, mode=0o644)
        atomic_file.replace(self.paths.client_key(issued.client_id), issued.key_pem, mode=0o600)

    def key_path(self, client_id: str) -> Path:
        return self.paths.client_key(client_id)

    def cert_path(self, client_id: str) -> Path:
        return self.paths.client_cert(client_id)
