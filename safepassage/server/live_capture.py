"""Live faces for holder flows: an image the calling device captured now and signed for.

A holder's live face must be a capture, never a vector (a template read from
a credential by anyone with a reader key, or from a stolen gallery, would
otherwise pass as the holder). So the server takes only an image, with the
device's capture statement over it (safepassage.credential.capture_statement):
signed with the key of the very client certificate the call was made with,
naming that device, the image's SHA-256, the time (at most two minutes old)
and the liveness check the device ran; each statement is accepted once.
A kiosk (unattended) must have run its head-turn challenge; an officer's
desk may instead state a supervised capture (the officer sees the person).
A caller that cannot sign (a browser behind the console) brings instead the
service's own statement (liveness_tokens.py), earned by passing the head-turn
check the service ran on its frames (CaptureService.CheckLiveness): bound to
that caller, that frame, two minutes and one use, it counts as head_turn.

What this proves: a device holding a live, unrevoked certificate of this
deployment vouched for this image, now, once. What it cannot prove: that the
device was not itself compromised or driven by a script with its key, or
that its liveness check cannot be fooled by a good mask or screen replay
(the kiosk's head-turn check is a parallax test, not certified PAD). The
enrolment layer further refuses captures (nearly) identical to the record's
own templates, which stops replays of the enrolment photo and of credential
templates rendered back into images by a simple pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import grpc

from safepassage import credential
from safepassage import face as faces
from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.enrolment import LiveFace, LiveFaceRefused
from safepassage.matcher import GallerySpec
from safepassage.server.identity import Caller, Role
from safepassage.server.liveness_tokens import SERVICE_STATEMENT_MARKER, LivenessTokens
from safepassage.server.peer import peer_certificate_pem
from safepassage.server.probes import ProbeReader

__all__ = ["ACCEPTED", "LiveCaptureReader", "Liveness"]

Liveness = credential.Liveness

# Which liveness a device of each role must have run for its capture to count as live.
ACCEPTED: Mapping[Role, frozenset[Liveness]] = {
    Role.KIOSK: frozenset({Liveness.HEAD_TURN}),
    Role.OFFICER: frozenset({Liveness.HEAD_TURN, Liveness.SUPERVISED}),
    Role.NGO_CASEWORKER: frozenset({Liveness.HEAD_TURN, Liveness.SUPERVISED}),
}


class LiveCaptureReader:
    def __init__(
        self,
        probes: ProbeReader,
        tokens: LivenessTokens,
        max_age_s: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._probes = probes
        self._tokens = tokens
        self._nonces = credential.NonceCache()
        self._max_age_s = max_age_s
        self._clock = clock

    def read(
        self,
        probe: mpb.Probe,
        statement: bytes,
        spec: GallerySpec,
        caller: Caller,
        context: grpc.ServicerContext,
        field: str = "live",
    ) -> LiveFace:
        """The embedded live face, once the statement over its image checked out; raises otherwise."""
        if probe.WhichOneof("kind") != "image":
            raise LiveFaceRefused(f"{field}: a live face must be an image captured now, never an embedding")
        liveness = self.liveness_of(probe.image, statement, caller, context, field)
        (face,) = self._probes.read(probe, spec, faces.FaceSelection.SINGLE, field)
        return LiveFace(face.vector, str(liveness))

    def liveness_of(
        self, image: bytes, statement: bytes, caller: Caller, context: grpc.ServicerContext, field: str
    ) -> Liveness:
        """The liveness a statement over ``image`` vouches for, once checked (and spent); raises otherwise."""
        if not statement:
            raise LiveFaceRefused(f"{field}: the capturing device's signed statement is missing")
        if statement.startswith(SERVICE_STATEMENT_MARKER):
            checked = self._tokens.verify_statement(statement, image, caller.label)
        else:
            checked = credential.verify_capture(
                statement,
                image,
                peer_certificate_pem(context),
                caller.client_id,
                self._clock(),
                self._nonces,
                max_age_s=self._max_age_s,
            )
        credential.require_liveness(checked, ACCEPTED.get(caller.role, frozenset()))
        return checked.liveness
