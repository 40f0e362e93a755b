"""The access interceptor: authenticate, rate-limit, authorise, then record.

One place decides every call, before any servicer runs:
1. the caller is the client certificate (mutual TLS; revocation honoured at once);
2. rate limits and daily budgets per client and per role;
3. the authorisation matrix (role x operation x gallery purpose), checked for
   every request message of a stream too; CCTV streams also need a signed
   authorisation;
4. after the call, one transparency-log entry per operation (per message of
   an identify stream) with who, what, which gallery, when and the outcome.
Errors raised here are SafePassage errors: the error interceptor outside this
one maps them to status codes (PERMISSION_DENIED, UNAUTHENTICATED, ...).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import grpc

import store
from audit_log import InvalidEvent, LogEvent
from matcher import GalleryPurpose
from safepassage_api.v1 import matching_pb2 as pb
from safepassage_api.v1 import protected_identity_pb2 as ppb
from safepassage_core.errors import NotFound, SafePassageError
from safepassage_server.authorization import Operation, check_call, check_purpose, operation_of
from safepassage_server.call_notes import CALL_NOTES, CallNotes
from safepassage_server.cctv_authorisation import METADATA_KEY, Authorisation, AuthorisationVerifier
from safepassage_server.errors import status_of
from safepassage_server.identity import CURRENT_CALLER, Caller, Role
from safepassage_server.limits import OperationClass

log = logging.getLogger(__name__)

SEARCHES = frozenset(
    {
        Operation.IDENTIFY,
        Operation.VERIFY,
        Operation.IDENTIFY_STREAM,
        Operation.VERIFY_HOLDER,
        Operation.CHECK_DUPLICATE,
    }
)
WRITES = frozenset(
    {
        Operation.INSERT_TEMPLATE,
        Operation.BULK_INSERT_TEMPLATES,
        Operation.DELETE_TEMPLATE,
        Operation.CONFIRM_MATCH,
        Operation.ENROL_RECORD,
        Operation.CHANGE_CONSENT,
        Operation.ISSUE_CREDENTIAL,
        Operation.CHANGE_PIN,
        Operation.ERASE_RECORD,
        Operation.ACKNOWLEDGE_REFERRAL,
    }
)
ADMINISTRATION = frozenset(
    {
        Operation.CREATE_GALLERY,
        Operation.DELETE_GALLERY,
        Operation.ROTATE_RECORD_KEYS,
        Operation.CALIBRATE_GALLERY,
        Operation.RENEW_TEMPLATE_PROTECTION,
    }
)


def operation_class(operation: Operation) -> OperationClass:
    if operation in SEARCHES:
        return OperationClass.SEARCH
    if operation in WRITES:
        return OperationClass.WRITE
    if operation in ADMINISTRATION:
        return OperationClass.ADMIN
    return OperationClass.READ


class Limiter(Protocol):
    def check(
        self, caller: Caller, operation_class: OperationClass, cost: int = 1, now: float | None = None
    ) -> None: ...


class Recorder(Protocol):
    """Where the interceptor records what happened (the transparency log, the fishing detector)."""

    def record(
        self, caller: Caller | None, operation: str, gallery_id: str, outcome: str, details: dict[str, str]
    ) -> None: ...


def _outcome_of(response: Any) -> tuple[str, dict[str, str]]:
    # Same details whatever PIN was given: a duress verification must look ordinary here too.
    # (The record a protected call is about is added from the call's notes: call_notes.py.)
    if isinstance(response, ppb.VerifyHolderResponse):
        return pb.Decision.Name(response.decision), {}
    if isinstance(response, ppb.CheckDuplicateResponse):
        # MATCH / NO_MATCH, so the fishing detector counts duplicate checks like any search.
        matched = response.matches_elsewhere > 0 or any(c.match for c in response.candidates)
        return ("MATCH" if matched else "NO_MATCH"), {
            "candidates": str(len(response.candidates)),
            "searched": str(response.searched),
        }
    if isinstance(response, ppb.ListReferralsResponse):
        return "OK", {"referrals": str(len(response.referrals))}
    if isinstance(response, pb.IdentifyResponse):
        details = {"faces": str(len(response.faces))}
        if response.HasField("target_fpir"):
            # A count: the log's shape rules keep free-form numbers out.
            details["target_fpir_ppm"] = str(round(response.target_fpir * 1_000_000))
        return pb.Decision.Name(response.decision), details
    if isinstance(response, pb.Gallery) and response.HasField("calibration"):
        return "OK", {"impostor_searches": str(response.calibration.impostor_searches)}
    if isinstance(response, pb.RenewTemplateProtectionResponse):
        return "OK", {
            "protection_version": str(response.protection_version),
            "galleries": str(len(response.galleries)),
        }
    if isinstance(response, pb.VerifyResponse):
        return pb.Decision.Name(response.decision), {}
    if isinstance(response, pb.BulkInsertResponse):
        return "OK", {"inserted": str(response.inserted), "failed": str(response.failed)}
    if isinstance(response, pb.IdentifyStreamResponse):
        # The request id and "replayed" let an auditor count the searches made per query.
        details = _request_details(response.request_id)
        if response.WhichOneof("outcome") == "error":
            code = response.error.code
            return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN"), details
        details["faces"] = str(len(response.result.faces))
        if response.probe_id:
            details["probe_id"] = str(response.probe_id)
        if response.replayed:
            details["replayed"] = "true"
        return pb.Decision.Name(response.result.decision), details
    return "OK", {}


def _request_details(request_id: str) -> dict[str, str]:
    """A valid request id as is, or as a digest where the log's shape rules refuse it (mixed case,
    over 64 characters, a long number): a refused entry would fail the stream. Invalid ids: nothing."""
    if not store.REQUEST_ID.fullmatch(request_id):
        return {}
    try:
        LogEvent(0, "system", "check", details={"request_id": request_id})
    except InvalidEvent:
        return {"request_id_sha256": hashlib.sha256(request_id.encode()).hexdigest()}
    return {"request_id": request_id}


class AccessInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        authenticate: Callable[[grpc.ServicerContext], Caller],
        purpose_of: Callable[[str], GalleryPurpose],
        cctv: AuthorisationVerifier,
        limiter: Limiter,
        recorder: Recorder,
    ) -> None:
        self._authenticate = authenticate
        self._purpose_of = purpose_of
        self._cctv = cctv
        self._limiter = limiter
        self._recorder = recorder
        self._grants_seen: set[str] = set()
        self._grants_lock = threading.Lock()

    # -- checks ------------------------------------------------------------------

    def _identify(self, context: grpc.ServicerContext) -> Caller:
        """Authenticate the call (Unauthenticated if not); from here on refusals name this caller."""
        caller = self._authenticate(context)
        CURRENT_CALLER.set(caller)
        return caller

    def _admit(self, caller: Caller, operation: Operation | None, charge: bool = True) -> None:
        """Check the role may call the operation at all; charge one call if asked."""
        if operation is not None:
            check_call(caller, operation)
            if charge:
                self._limiter.check(caller, operation_class(operation))

    def _check_message(
        self, caller: Caller, operation: Operation, request: Any, context: grpc.ServicerContext
    ) -> str:
        """Authorise one request message against its gallery's purpose; returns the gallery id."""
        if operation is Operation.LIST_GALLERIES:
            return ""
        gallery_id = str(getattr(request, "gallery_id", ""))
        if not gallery_id:
            return ""  # the servicer refuses the empty id with INVALID_ARGUMENT
        if operation is Operation.CREATE_GALLERY:
            purpose = {
                pb.WATCHLIST: GalleryPurpose.WATCHLIST,
                pb.PROTECTED_IDENTITY: GalleryPurpose.PROTECTED_IDENTITY,
            }.get(request.purpose)
            if purpose is None:
                return gallery_id  # the servicer says what a valid purpose is
        else:
            try:
                purpose = self._purpose_of(gallery_id)
            except NotFound:
                # Nothing to protect: the servicer answers NOT_FOUND (per item, in a stream).
                return gallery_id
        check_purpose(caller, operation, gallery_id, purpose)
        if caller.role is Role.CCTV_EDGE and operation in SEARCHES:
            token = dict(context.invocation_metadata()).get(METADATA_KEY)
            grant = self._cctv.verify(str(token) if token else None, caller, gallery_id)
            self._note_first_use(caller, grant)
        return gallery_id

    def _note_first_use(self, caller: Caller, grant: Authorisation) -> None:
        """The first use of each authorisation goes into the transparency log (hashes, no text)."""
        with self._grants_lock:
            if grant.authorisation_id in self._grants_seen:
                return
            self._grants_seen.add(grant.authorisation_id)
        details = {
            "authorisation": grant.authorisation_id,
            "issued_by": grant.issued_by,
            "cameras": str(len(grant.cameras)),
            "legal_basis_sha256": hashlib.sha256(grant.legal_basis.encode()).hexdigest(),
            "expires": datetime.datetime.fromtimestamp(grant.expires, datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        }
        self._record(caller, "authorisation.use", grant.gallery_id, "OK", details)

    def _record(
        self, caller: Caller | None, operation: str, gallery_id: str, outcome: str, details: dict[str, str]
    ) -> None:
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
            caller: Caller | None, gallery_id: str, error: BaseException, notes: CallNotes | None = None
        ) -> None:
            outcome = status_of(error).name if isinstance(error, SafePassageError) else "INTERNAL"
            # A log failure is already logged; the caller must still get the original error.
            with contextlib.suppress(Exception):
                self._record(caller, name, gallery_id, outcome, notes.details() if notes else {})

        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            caller: Caller | None = None
            gallery_id = ""
            # Fresh per call: pool threads keep their context from one call to the next.
            notes = CallNotes()
            CALL_NOTES.set(notes)
            try:
                caller = self._identify(context)
                self._admit(caller, operation)
                if unknown:
                    operation_of(method)  # raises PermissionDenied
                if operation is None:
                    return handler.unary_unary(request, context)
                gallery_id = self._check_message(caller, operation, request, context)
                response = handler.unary_unary(request, context)
            except BaseException as error:
                if operation is not None or unknown:
                    failed(caller, gallery_id, error, notes)
                raise
            outcome, extra = _outcome_of(response)
            self._record(caller, name, gallery_id, outcome, {**extra, **notes.details()})
            return response

        def checked_stream(
            caller: Caller, requests: Iterable[Any], context: grpc.ServicerContext, seen: list[str]
        ) -> Iterator[Any]:
            assert operation is not None
            for request in requests:
                # Each message of a stream is charged and authorised on its own.
                self._limiter.check(caller, operation_class(operation))
                gallery_id = self._check_message(caller, operation, request, context)
                if gallery_id and gallery_id not in seen:
                    seen.append(gallery_id)
                yield request

        def stream_unary(requests: Iterable[Any], context: grpc.ServicerContext) -> Any:
            caller: Caller | None = None
            seen: list[str] = []
            try:
                caller = self._identify(context)
                self._admit(caller, operation, charge=False)
                if unknown or operation is None:
                    operation_of(method)
                    return handler.stream_unary(requests, context)
                response = handler.stream_unary(checked_stream(caller, requests, context, seen), context)
            except BaseException as error:
                failed(caller, seen[0] if seen else "", error)
                raise
            outcome, extra = _outcome_of(response)
            extra["galleries"] = str(len(seen))
            self._record(caller, name, seen[0] if seen else "", outcome, extra)
            return response

        def stream_stream(requests: Iterable[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            caller: Caller | None = None
            seen: list[str] = []
            try:
                caller = self._identify(context)
                self._admit(caller, operation, charge=False)
                if unknown or operation is None:
                    operation_of(method)
                    yield from handler.stream_stream(requests, context)
                    return
                for response in handler.stream_stream(
                    checked_stream(caller, requests, context, seen), context
                ):
                    outcome, extra = _outcome_of(response)
                    self._record(caller, name, seen[-1] if seen else "", outcome, extra)
                    yield response
            except BaseException as error:
                if not isinstance(error, GeneratorExit):
                    failed(caller, seen[-1] if seen else "", error)
                raise

        def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._admit(self._identify(context), operation)
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
