"""Offline check of a holder credential against a live capture, on an officer's or a kiosk's device.

The device trusts some issuer keys and holds its own reader key; with those
it verifies the credential the holder shows (signature, dates, sealing), then
embeds the one face of a live capture with its own face pipeline and compares
it 1:1 with the credential's template. No server is called: a border post
without a network can still tell a holder from someone carrying a copy of
their QR code.

The live capture must show exactly one face: with none there is nothing to
compare, and with several the device cannot know who is presenting the
credential, so the officer retakes the picture (PipelineInputError) rather
than the holder being refused. Only public metadata leaves this module; the
template stays inside the verified credential.

A device that holds its issuer's revocation list (synced with `safepassage
credential revocations`) refuses credentials the issuer has retired, such as
the previous credential of a holder who was issued a new one, or any
credential of an erased record. Once a list is given, every check needs it
to be current: a stale list, or a credential of an issuer it does not cover,
is refused rather than passed unchecked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from safepassage.core.metric import Metric
from safepassage.credential import (
    CredentialInfo,
    ModelMismatch,
    ReaderKey,
    RevocationList,
    TrustedIssuers,
    UnknownIssuer,
    match,
    require_model,
    verify,
)
from safepassage.face.errors import PipelineInputError
from safepassage.face.pipeline import FacePipeline, RgbImage

__all__ = ["HolderCheck", "HolderCheckResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HolderCheckResult:
    """A credential verified offline and matched to the live face; no template inside."""

    credential_id: str
    issuer_id: str
    score: float
    threshold: float
    metric: Metric
    info: CredentialInfo
    record_id: str = field(repr=False)  # sealed in the credential: for a follow-up with the server only

    def line(self) -> str:
        """One line for an officer's screen."""
        relation = "<=" if self.metric is Metric.L2 else ">="
        return (
            f"VERIFIED credential {self.credential_id} issued by {self.issuer_id}:"
            f" {self.metric.value} score {self.score:.3f} {relation} threshold {self.threshold:.3f},"
            f" valid until {self.info.expires_at.isoformat()}"
        )


class HolderCheck:
    """Verifies credentials with fixed keys and a loaded face pipeline; one check at a time per pipeline."""

    def __init__(
        self,
        pipeline: FacePipeline,
        trusted: TrustedIssuers,
        reader: ReaderKey,
        revocations: RevocationList | None = None,
    ) -> None:
        if revocations is not None and revocations.issuer_key_id not in trusted:
            raise UnknownIssuer(
                f"the revocation list is signed by issuer key {revocations.issuer_key_id},"
                " which this device does not trust"
            )
        self.pipeline = pipeline
        self.trusted = trusted
        self.reader = reader
        # Replace with a newer list (verify_revocations) as it is synced; read once per check.
        self.revocations = revocations

    def check(self, credential_text: str, live: RgbImage, now: datetime | None = None) -> HolderCheckResult:
        """Verify ``credential_text`` and match it to the one face in ``live`` (uint8 HxWx3 RGB).

        Raises the credential's errors (MalformedCredential, UnknownIssuer,
        CredentialTampered, CredentialExpired, CredentialNotYetValid,
        NotForThisReader, CredentialRevoked, ModelMismatch, HolderMismatch),
        RevocationListStale or RevocationListNotForIssuer when a revocation
        list is held but cannot vouch for this credential, or
        PipelineInputError when the capture is malformed or does not show
        exactly one face.
        """
        credential = verify(credential_text, self.trusted, self.reader, now)
        revocations = self.revocations
        if revocations is not None:
            revocations.require_current(now)
            revocations.check(credential.info)
        spec = self.pipeline.spec
        # Before the pipeline runs: a template of another model is of no use.
        require_model(credential, spec.name)
        if credential.metric.value != spec.metric:
            raise ModelMismatch(
                f"credential {credential.credential_id} compares by {credential.metric.value};"
                f" model {spec.name} on this device compares by {spec.metric}"
            )
        faces = self.pipeline.process(live)
        if not faces:
            raise PipelineInputError("no face was found in the live capture; take the picture again")
        if len(faces) > 1:
            raise PipelineInputError(
                f"{len(faces)} faces were found in the live capture; only the holder may be in the picture"
            )
        result = match(credential, faces[0].embedding, spec.name)
        log.info(
            "credential %s of issuer %s matched the live face (%s %.3f, threshold %.3f)",
            credential.credential_id,
            credential.issuer_id,
            result.metric.value,
            result.score,
            result.threshold,
        )
        return HolderCheckResult(
            credential_id=credential.credential_id,
            issuer_id=credential.issuer_id,
            score=result.score,
            threshold=result.threshold,
            metric=result.metric,
            info=credential.info,
            record_id=credential.record_id,
        )
