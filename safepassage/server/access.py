"""The access interceptor: authenticate, rate-limit, authorise, then record.

One place decides every call, before any servicer runs:
1. the caller is the client certificate (mutual TLS; revocation honoured at once);
2. rate limits and daily budgets per client and per role;
3. the authorisation matrix (role x operation x gallery purpose), checked for
   every request message of a stream too; CCTV streams also need a signed
   authorisation; a search's threshold may only be stricter than the
   gallery's own, and a camera's is always the gallery's (authorization.py);
4. after the call, one transparency-log entry per operation (per message of
   an identify stream) with who, what, which gallery, when and the outcome.
Every message of a stream is authenticated again (a certificate revoked or
expired mid-stream ends it with UNAUTHENTICATED), charged and authorised.
A refusal is logged under the authenticated caller and with the gallery the
request named (a refused stream's first message is read for it). Text a
client chose enters the log only as a keyed pseudonym (pseudonyms.py): the
request id of a stream message, and the id of a gallery that does not exist.
Errors raised here are SafePassage errors: the error interceptor outside this
one maps them to status codes (PERMISSION_DENIED, UNAUTHENTICATED, ...).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.core.errors import InvalidInput, NotFound, SafePassageError
from safepassage.matcher import GalleryInfo, GalleryPurpose, GallerySpec, ThresholdChoice
from safepassage.matcher.gallery import check_threshold
from safepassage.server.authorization import (
    THRESHOLD_OPERATIONS,
    Operation,
    check_call,
    check_may_choose_threshold,
    check_purpose,
    check_stricter_threshold,
    operation_of,
)
from safepassage.server.call_notes import CALL_NOTES, CallNotes
from safepassage.server.call_outcome import (
    DECISIONS,
    SEARCHES,
    decision_details,
    document_decision_details,
    document_details,
    operation_class,
    operation_cost,
    outcome_of,
)
from safepassage.server.cctv_authorisation import METADATA_KEY, Authorisation, AuthorisationVerifier
from safepassage.server.errors import status_of
from safepassage.server.forwarding import check_not_forwarded
from safepassage.server.identity import CURRENT_CALLER, Caller, Role
from safepassage.server.limits import OperationClass
from safepassage.server.pseudonyms import LogPseudonyms

log = logging.getLogger(__name__)


class Limiter(Protocol):
    def check(
        self, caller: Caller, operation_class: OperationClass, cost: int = 1, now: float | None = None
    ) -> None: ...


class Galleries(Protocol):
    """What the interceptor reads of galleries (the matcher): purpose, metric, thresholds."""

    def spec(self, gallery_id: str) -> GallerySpec: ...

    def describe(self, gallery_id: str) -> GalleryInfo: ...

    def check_search(
        self,
        gallery_id: str,
        top_k: int = 5,
        restrict_to: Sequence[str] | None = None,
        threshold: float | None = None,
        target_fpir: float | None = None,
    ) -> ThresholdChoice: ...


class Recorder(Protocol):
    """Where the interceptor records what happened (the transparency log, the fishing detector)."""

    def record(
        self, caller: Caller | None, operation: str, gallery_id: str, outcome: str, details: dict[str, str]
    ) -> None: ...


def _gallery_of(operation: Operation | None, request: Any) -> str:
    """The gallery a request names ("" for none): what its log entry names, refused or not."""
    if operation is Operation.LIST_GALLERIES or request is None:
        return ""
    value = getattr(request, "gallery_id", "")
    return value if isinstance(value, str) else ""


def _first_gallery(operation: Operation | None, requests: Iterator[Any]) -> str:
    """The gallery of a refused stream's first message, for its log entry ("" if none comes)."""
    try:
        return _gallery_of(operation, next(requests, None))
    except Exception:  # the client went away: the refusal is logged without a gallery
        return ""


def _asked_threshold(operation: Operation, request: Any) -> tuple[float | None, float | None]:
    """The threshold and target FPIR a search request names (None: not named)."""
    threshold = float(request.threshold) if request.HasField("threshold") else None
    fpir = None
    if operation is not Operation.VERIFY and request.HasField("target_fpir"):
        fpir = float(request.target_fpir)
    return threshold, fpir


@dataclass
class _StreamGalleries:
    """The galleries of a stream's messages: the current one (named by its entries) and all seen."""

    current: str = ""
    seen: list[str] = field(default_factory=list)

    def admitted(self) -> None:
        if self.current and self.current not in self.seen:
            self.seen.append(self.current)


class AccessInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        authenticate: Callable[[grpc.ServicerContext], Caller],
        galleries: Galleries,
        cctv: AuthorisationVerifier,
        limiter: Limiter,
        recorder: Recorder,
        pseudonyms: LogPseudonyms,
    ) -> None:
        self._authenticate = authenticate
        self._galleries = galleries
        self._cctv = cctv
        self._limiter = limiter
        self._recorder = recorder
        self._pseudonyms = pseudonyms
        self._grants_seen: set[str] = set()
        self._grants_lock = threading.Lock()

    # -- checks ------------------------------------------------------------------

    def _identify(self, context: grpc.ServicerContext) -> Caller:
        """Authenticate the call (Unauthenticated if not); from here on refusals name this caller."""
        caller = self._authenticate(context)
        CURRENT_CALLER.set(caller)
        return caller

    def _admit(
        self,
        caller: Caller,
        operation: Operation | None,
        context: grpc.ServicerContext,
        charge: bool = True,
        cost: int = 1,
    ) -> None:
        """Check the role may call the operation at all; charge ``cost`` units of its class if asked."""
        # Only the console acts for another certificate; anyone else trying is refused under their name.
        check_not_forwarded(caller, context)
        if operation is not None:
            check_call(caller, operation)
            if charge:
                self._limiter.check(caller, operation_class(operation), cost)

    def _check_message(
        self,
        caller: Caller,
        operation: Operation,
        request: Any,
        context: grpc.ServicerContext,
        notes: CallNotes,
    ) -> None:
        """Authorise one request message against its gallery: purpose, CCTV authorisation, threshold."""
        notes.authorisation_id, notes.authorisation_terms = "", ("", 0)
        gallery_id = _gallery_of(operation, request)
        if not gallery_id:
            return  # nothing named; the servicer refuses an empty id with INVALID_ARGUMENT
        spec: GallerySpec | None = None
        if operation is Operation.CREATE_GALLERY:
            purpose = {
                pb.WATCHLIST: GalleryPurpose.WATCHLIST,
                pb.PROTECTED_IDENTITY: GalleryPurpose.PROTECTED_IDENTITY,
            }.get(request.purpose)
            if purpose is None:
                return  # the servicer says what a valid purpose is
        else:
            try:
                spec = self._galleries.spec(gallery_id)
            except NotFound:
                # Nothing to protect: the servicer answers NOT_FOUND (per item, in a stream).
                return
            purpose = spec.purpose
        check_purpose(caller, operation, gallery_id, purpose)
        if caller.role is Role.CCTV_EDGE and operation in SEARCHES:
            token = dict(context.invocation_metadata()).get(METADATA_KEY)
            grant = self._cctv.verify(str(token) if token else None, caller, gallery_id)
            notes.authorisation_id = grant.authorisation_id  # a kept hit records what admitted it
            notes.authorisation_terms = (grant.legal_basis, grant.expires)
            self._note_first_use(caller, grant)
        if spec is not None and operation in THRESHOLD_OPERATIONS:
            self._check_threshold(caller, operation, spec, request)

    def _check_threshold(self, caller: Caller, operation: Operation, spec: GallerySpec, request: Any) -> None:
        """A search may name a threshold (or target FPIR) only to be stricter than the gallery's own."""
        threshold, target_fpir = _asked_threshold(operation, request)
        if threshold is None and target_fpir is None:
            return
        check_may_choose_threshold(caller, operation, spec.gallery_id)
        try:
            if operation is Operation.VERIFY:
                # Verification has no FPIR: the gallery's fixed threshold is its own.
                own, asked = spec.threshold, check_threshold(threshold or 0.0, spec.metric)
            else:
                # top_k 1: valid under any limit, so only the threshold is judged here.
                own = self._galleries.check_search(spec.gallery_id, top_k=1).value
                asked = self._galleries.check_search(
                    spec.gallery_id, top_k=1, threshold=threshold, target_fpir=target_fpir
                ).value
        except InvalidInput:
            # A value no search can use (not finite, out of range, both named): the servicer refuses it
            # the same way (in band, in a stream), and nothing is searched. A target FPIR the gallery
            # cannot turn into a threshold (not calibrated) is refused here: a calibration arriving
            # before the servicer's own check must not let an unjudged threshold through.
            return
        check_stricter_threshold(caller, operation, spec.gallery_id, spec.metric, own, asked)

    def _request_details(self, operation: Operation | None, request: Any) -> dict[str, str]:
        """What the entry says of the request itself: the kept probe a confirmation names, an officer's
        decision (its codes; the candidate and the note by pseudonym), refused or not."""
        probe_id = getattr(request, "probe_id", 0)
        reviews = (Operation.CONFIRM_MATCH, Operation.DISMISS_MATCH)
        if operation in reviews and isinstance(probe_id, int) and probe_id:
            return {"probe_hmac_sha256": self._pseudonyms.probe(probe_id)}
        reference_id = getattr(request, "reference_id", None)
        if operation is Operation.GET_REFERENCE_IMAGE and isinstance(reference_id, str) and reference_id:
            return {"reference_hmac_sha256": self._pseudonyms.reference(reference_id)}
        if operation is Operation.RECORD_DECISION and request is not None:
            return decision_details(request, self._pseudonyms)
        if operation is Operation.VERIFY_DOCUMENT and request is not None:
            return document_details(request, self._pseudonyms)
        if operation is Operation.RECORD_DOCUMENT_DECISION and request is not None:
            return document_decision_details(request, self._pseudonyms)
        if operation is Operation.SIGN_AUTHORISATION and request is not None:
            # What was asked, granted or refused: the legal basis was typed, so only its keyed hash.
            return {
                "cameras": str(len(request.cameras)),
                "legal_basis_hmac_sha256": self._pseudonyms.legal_basis(request.legal_basis),
            }
        return {}

    def _exists(self, gallery_id: str) -> bool:
        try:
            self._galleries.spec(gallery_id)
        except SafePassageError:
            return False
        return True

    def _note_first_use(self, caller: Caller, grant: Authorisation) -> None:
        """The first use of each authorisation goes into the transparency log (hashes, no text)."""
        with self._grants_lock:
            if grant.authorisation_id in self._grants_seen:
                return
            self._grants_seen.add(grant.authorisation_id)
        if self._galleries.describe(grant.gallery_id).calibration is None:
            # Its threshold is a default whose FPIR at this gallery's size was never measured.
            log.warning(
                "camera streams to gallery %s under authorisation %s: the watchlist is not calibrated"
                " (safepassage gallery calibrate --target-fpir)",
                grant.gallery_id,
                grant.authorisation_id,
            )
        details = {
            "authorisation": grant.authorisation_id,
            "issued_by": grant.issued_by,
            "signer_serial": grant.signer_serial,
            "cameras": str(len(grant.cameras)),
            "legal_basis_sha256": hashlib.sha256(grant.legal_basis.encode()).hexdigest(),
            "expires": datetime.datetime.fromtimestamp(grant.expires, datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        }
        self._record(caller, "authorisation.use", grant.gallery_id, "OK", details)

    def _record(
        self,
        caller: Caller | None,
        operation: str,
        gallery_id: str,
        outcome: str,
        details: dict[str, str],
        known: bool = False,
    ) -> None:
        """Append one entry; `known`: the gallery existed when the call began (a deleted one still)."""
        if gallery_id and not known and not self._exists(gallery_id):
            # The id of no gallery is text the client chose: it enters as a pseudonym.
            details = {**details, "gallery_hmac_sha256": self._pseudonyms.gallery(gallery_id)}
            gallery_id = ""
        try:
            self._recorder.record(caller, operation, gallery_id, outcome, details)
        except Exception:  # the log must not take the service down, but must be noticed
            log.exception("could not record %s in the transparency log", operation)
            raise

    # -- wrapping ----------------------------------------------------------------

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method: str = details.method
        try:
            operation = operation_of(method)
        except SafePassageError:
            operation = None
            unknown = True
        else:
            unknown = False
        # "MatchingService/Identify": how the transparency log names the operation.
        name = method.rsplit(".", 1)[-1]

        def failed(
            caller: Caller | None,
            gallery_id: str,
            error: BaseException,
            details: dict[str, str] | None = None,
            known: bool = False,
        ) -> None:
            outcome = status_of(error).name if isinstance(error, SafePassageError) else "INTERNAL"
            # A log failure is already logged; the caller must still get the original error.
            with contextlib.suppress(Exception):
                self._record(caller, name, gallery_id, outcome, details or {}, known)

        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            caller: Caller | None = None
            # Named in the entry whatever happens, a refusal at admission included.
            gallery_id = _gallery_of(operation, request)
            known = bool(gallery_id) and self._exists(gallery_id)
            asked = self._request_details(operation, request)
            # Fresh per call: pool threads keep their context from one call to the next.
            notes = CallNotes()
            CALL_NOTES.set(notes)
            try:
                caller = self._identify(context)
                cost = operation_cost(operation, request) if operation is not None else 1
                self._admit(caller, operation, context, cost=cost)
                if unknown:
                    operation_of(method)  # raises PermissionDenied
                if operation is None:
                    return handler.unary_unary(request, context)
                self._check_message(caller, operation, request, context, notes)
                response = handler.unary_unary(request, context)
            except BaseException as error:
                with contextlib.suppress(Exception):
                    notes.settle(logged=False)
                if operation is not None or unknown:
                    failed(caller, gallery_id, error, {**asked, **notes.details()}, known)
                raise
            outcome, extra = outcome_of(response, self._pseudonyms)
            try:
                self._record(caller, name, gallery_id, outcome, {**extra, **asked, **notes.details()}, known)
            except BaseException:
                with contextlib.suppress(Exception):
                    notes.settle(logged=False)
                raise
            notes.settle(logged=True)
            return response

        def admit_stream(
            caller: Caller,
            requests: Iterator[Any],
            galleries: _StreamGalleries,
            context: grpc.ServicerContext,
        ) -> None:
            try:
                self._admit(caller, operation, context, charge=False)
                if unknown:
                    operation_of(method)  # raises PermissionDenied
            except SafePassageError:
                # The refusal names the gallery the stream was for: its first message says which.
                galleries.current = _first_gallery(operation, requests)
                raise

        def checked_stream(
            caller: Caller,
            requests: Iterable[Any],
            context: grpc.ServicerContext,
            galleries: _StreamGalleries,
            notes: CallNotes,
        ) -> Iterator[Any]:
            assert operation is not None
            for request in requests:
                galleries.current = _gallery_of(operation, request)
                # Each message of a stream is authenticated again (a certificate revoked or expired
                # since the last one ends the stream), charged and authorised on its own.
                self._authenticate(context)
                self._limiter.check(caller, operation_class(operation))
                self._check_message(caller, operation, request, context, notes)
                galleries.admitted()
                yield request

        def stream_unary(requests: Iterable[Any], context: grpc.ServicerContext) -> Any:
            caller: Caller | None = None
            galleries = _StreamGalleries()
            notes = CallNotes()
            CALL_NOTES.set(notes)
            messages = iter(requests)
            try:
                caller = self._identify(context)
                admit_stream(caller, messages, galleries, context)
                if operation is None:
                    return handler.stream_unary(messages, context)
                response = handler.stream_unary(
                    checked_stream(caller, messages, context, galleries, notes), context
                )
            except BaseException as error:
                failed(caller, galleries.current, error)
                raise
            outcome, extra = outcome_of(response, self._pseudonyms)
            extra["galleries"] = str(len(galleries.seen))
            self._record(caller, name, galleries.seen[0] if galleries.seen else "", outcome, extra)
            return response

        def stream_stream(requests: Iterable[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            caller: Caller | None = None
            galleries = _StreamGalleries()
            notes = CallNotes()
            CALL_NOTES.set(notes)
            messages = iter(requests)
            try:
                caller = self._identify(context)
                admit_stream(caller, messages, galleries, context)
                if operation is None:
                    yield from handler.stream_stream(messages, context)
                    return
                for response in handler.stream_stream(
                    checked_stream(caller, messages, context, galleries, notes), context
                ):
                    outcome, extra = outcome_of(response, self._pseudonyms)
                    searched = notes.take_search()  # cleared for the next message either way
                    if outcome in DECISIONS:  # an error answer is no search for the fishing count
                        extra.update(searched)
                    if notes.authorisation_id:  # each use of a CCTV authorisation (the console lists them)
                        extra["authorisation"] = notes.authorisation_id
                    # The answer's message is the current one: the servicer answers each before reading on.
                    self._record(caller, name, galleries.current, outcome, extra)
                    notes.settle(logged=True)  # e.g. the reply ledger: only what the log shows
                    yield response
            except BaseException as error:
                with contextlib.suppress(Exception):
                    notes.settle(logged=False)
                # A client that cancels or drops its stream ends it: every answer is logged, no failure.
                client_left = isinstance(error, grpc.RpcError) and not context.is_active()
                if not isinstance(error, GeneratorExit) and not client_left:
                    failed(caller, galleries.current, error)
                raise

        def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._admit(self._identify(context), operation, context)
            if unknown:
                operation_of(method)
            yield from handler.unary_stream(request, context)

        wrap = grpc.unary_unary_rpc_method_handler
        if handler.unary_unary:
            return wrap(unary_unary, handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                stream_stream, handler.request_deserializer, handler.response_serializer
            )
        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
