"""The CCTV authority on the server: signs live-identification authorisations for administrators.

Off by default. An authorisation is signed by an authority with the key of an admin certificate,
off the server (`safepassage authorise`): the service that runs the searches cannot then allow
them itself. A deployment that prefers to sign in the console sets `cctv.signing_key_file` and
`cctv.signing_certificate_file` (an admin-role client certificate of its CA, e.g. one issued as
`cctv-authority`); the server reads them at start-up, and AdministrationService.SignAuthorisation
signs for an administrator. The trade-off (docs/console.md): whoever takes the server holds that
key too, and can authorise its own searches; every signature is still one transparency-log entry
under the administrator who asked, and revoking the authority's certificate stops them all.

What it signs is exactly what the command line signs (cctv_authorisation.sign), under the same
limits and more: the cameras must hold valid cctv_edge certificates of this PKI, the gallery must be
a calibrated watchlist (as `safepassage authorise` requires without --uncalibrated-ok), the window
must end within 31 days from now. Each token is then checked by the server's own verifier, as a
camera's stream would be, before it is handed out: a token this server would refuse is never made.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from safepassage.core import certificates, key_files, signing
from safepassage.core.certificates import Certificate
from safepassage.core.errors import FailedPrecondition, InvalidInput
from safepassage.matcher import GalleryInfo, GalleryPurpose
from safepassage.server import certificate_index
from safepassage.server.cctv_authorisation import (
    MAX_VALIDITY_S,
    Authorisation,
    AuthorisationRefused,
    AuthorisationVerifier,
    sign,
)
from safepassage.server.certificate_index import CertificateKind
from safepassage.server.config import CctvConfig, ConfigError
from safepassage.server.identity import Caller, Role
from safepassage.server.pki_folder import PkiPaths
from safepassage.server.revocation import read_revoked

__all__ = ["SETTING", "CctvAuthority", "SignedToken", "load_authority"]

SETTING = "cctv.signing_key_file"
MAX_CAMERAS = 64
MAX_LEGAL_BASIS_CHARS = 500
# A form filled in a moment ago may name "from" a little in the past: it is taken as now.
PAST_START_SLACK_S = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_START_UP_CHECK = "start-up-check"


class Galleries(Protocol):
    def describe(self, gallery_id: str) -> GalleryInfo: ...


@dataclass(frozen=True)
class SignedToken:
    token: str = field(repr=False)
    authorisation: Authorisation  # as the server's verifier read it back (signer_serial set)


class CctvAuthority:
    def __init__(
        self,
        certificate: Certificate,
        key: signing.EcSigningKey,
        pki_folder: Path,
        verifier: AuthorisationVerifier,
    ) -> None:
        self._certificate = certificate
        self._key = key
        self._paths = PkiPaths(pki_folder)
        self._verifier = verifier

    def check(self) -> None:
        """Sign and verify a throwaway token: the certificate must be one this server's verifier takes."""
        probe = Caller(client_id=_START_UP_CHECK, role=Role.CCTV_EDGE, serial=0, fingerprint="")
        token = self._sign_checked(_START_UP_CHECK, [_START_UP_CHECK], _START_UP_CHECK, int(time.time()), 60)
        self._verify(token, probe, _START_UP_CHECK, time.time())

    def sign(
        self,
        galleries: Galleries,
        gallery_id: str,
        cameras: Sequence[str],
        legal_basis: str,
        not_before: float | None,
        expires: float,
        now: float | None = None,
    ) -> SignedToken:
        clock = time.time() if now is None else now
        named = _cameras(cameras)
        self._check_cameras(named)
        basis = _legal_basis(legal_basis)
        start = _start(not_before, clock)
        end = int(expires)
        if end <= clock:
            raise InvalidInput("an authorisation's validity must end in the future")
        if end <= start:
            raise InvalidInput("an authorisation's validity must end after it starts")
        if end - clock > MAX_VALIDITY_S:
            raise InvalidInput(
                f"an authorisation's validity must end within {MAX_VALIDITY_S // 86400} days from now,"
                " as `safepassage authorise --hours` allows"
            )
        _check_watchlist(galleries, gallery_id)
        token = self._sign_checked(gallery_id, named, basis, start, end - start)
        camera = Caller(client_id=named[0], role=Role.CCTV_EDGE, serial=0, fingerprint="")
        grant = self._verify(token, camera, gallery_id, max(float(start), clock))
        return SignedToken(token, grant)

    def _sign_checked(
        self, gallery_id: str, cameras: Sequence[str], basis: str, start: int, span: int
    ) -> str:
        try:
            return sign(
                gallery_id=gallery_id,
                cameras=cameras,
                legal_basis=basis,
                valid_for_s=span,
                admin_cert=self._certificate,
                admin_key=self._key,
                now=start,
            )
        except ValueError as error:
            raise InvalidInput(str(error)) from None

    def _verify(self, token: str, camera: Caller, gallery_id: str, at: float) -> Authorisation:
        try:
            return self._verifier.verify(token, camera, gallery_id, now=at)
        except AuthorisationRefused as error:
            raise FailedPrecondition(
                f"the CCTV authority's certificate ({SETTING}) makes authorisations this server"
                f" refuses: {error}"
            ) from None

    def _check_cameras(self, cameras: Sequence[str]) -> None:
        valid = {
            record.client_id
            for record in certificate_index.certificates(self._paths, read_revoked(self._paths))
            if record.kind is CertificateKind.CLIENT
            and record.role is Role.CCTV_EDGE
            and record.status() == "valid"
        }
        for camera in cameras:
            if camera not in valid:
                raise InvalidInput(
                    f"camera {camera!r} holds no valid cctv_edge certificate of this deployment"
                )


def _cameras(cameras: Sequence[str]) -> list[str]:
    named = list(dict.fromkeys(camera.strip() for camera in cameras if camera.strip()))
    if not named:
        raise InvalidInput("an authorisation names at least one camera")
    if len(named) > MAX_CAMERAS:
        raise InvalidInput(f"an authorisation names at most {MAX_CAMERAS} cameras")
    return named


def _legal_basis(text: str) -> str:
    basis = text.strip()
    if not basis:
        raise InvalidInput("an authorisation names its legal basis")
    if len(basis) > MAX_LEGAL_BASIS_CHARS or _CONTROL.search(basis):
        raise InvalidInput(f"the legal basis is one line of at most {MAX_LEGAL_BASIS_CHARS} characters")
    return basis


def _start(not_before: float | None, clock: float) -> int:
    if not_before is None:
        return int(clock)
    if not_before < clock - PAST_START_SLACK_S:
        raise InvalidInput("an authorisation cannot start in the past")
    return int(max(not_before, clock))


def _check_watchlist(galleries: Galleries, gallery_id: str) -> None:
    if not gallery_id:
        raise InvalidInput("an authorisation names the watchlist its cameras may search")
    info = galleries.describe(gallery_id)  # NotFound for a gallery that does not exist
    if info.spec.purpose is not GalleryPurpose.WATCHLIST:
        raise FailedPrecondition(f"gallery {gallery_id} is not a watchlist: cameras search watchlists only")
    if info.calibration is None:
        # As `safepassage authorise` refuses it: a default threshold's FPIR at this size was never measured.
        raise FailedPrecondition(
            f"watchlist {gallery_id} is not calibrated: its threshold {info.spec.threshold:.3f} is a default"
            " whose false positive rate at this size was never measured. Calibrate it first"
            f" (`safepassage gallery calibrate {gallery_id} --impostors DIR --target-fpir 0.01`,"
            " or the galleries page)"
        )


def load_authority(
    settings: CctvConfig, pki_folder: Path, verifier: AuthorisationVerifier
) -> CctvAuthority | None:
    """The authority of `cctv.signing_key_file` (None: not set, the default), checked at start-up."""
    if settings.signing_key_file is None or settings.signing_certificate_file is None:
        return None
    cert_path = settings.signing_certificate_file
    try:
        certificate = certificates.parse_pem(
            cert_path.read_bytes(), f"cctv.signing_certificate_file {str(cert_path)!r}", ConfigError
        )
    except OSError as error:
        raise ConfigError(
            f"cannot read cctv.signing_certificate_file {str(cert_path)!r}: {error.strerror}"
        ) from None
    key = key_files.load_private_pem(settings.signing_key_file, "CCTV authority key", ConfigError)
    if not isinstance(key, signing.EcSigningKey):
        raise ConfigError(f"{SETTING} {str(settings.signing_key_file)!r} does not hold an EC private key")
    if not certificates.holds_key(certificate, key):
        raise ConfigError(f"{SETTING} is not the key of cctv.signing_certificate_file")
    authority = CctvAuthority(certificate, key, pki_folder, verifier)
    try:
        authority.check()
    except FailedPrecondition as error:
        raise ConfigError(str(error)) from None
    return authority
