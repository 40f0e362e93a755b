"""One message end to end: journal, schema, operation, answer, transparency log.

The broker's receiver thread calls :meth:`AbisAdapter.take`, which writes the job to the journal
and either answers at once (a refusal, ``ping``, ``pendingJobs``, ``referenceCount``, a request id
already answered) or hands the job to the workers (``insert``, ``identify``, ``delete``), so the
cheap questions never queue behind a datashare download. Every message, answered or refused,
becomes one transparency-log event: the operation, the outcome (OK or FAILURE_<reason>), and the
request and reference ids as keyed pseudonyms (never the ids themselves, never biometrics).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from safepassage.abis.broker import Delivery
from safepassage.abis.cbeff import read_cbeff_faces
from safepassage.abis.datashare import DatashareClient
from safepassage.abis.errors import AbisRefusal, FailureReason
from safepassage.abis.journal import Job, JobJournal, JobState
from safepassage.abis.messages import (
    Operation,
    Request,
    answer,
    encode_answer,
    failure,
    read_request,
    request_id_of,
)
from safepassage.abis.references import ReferenceDatabase
from safepassage.audit import LogEvent, TransparencyLog, pseudonym
from safepassage.core.errors import SafePassageError, Unavailable

__all__ = ["AbisAdapter"]

log = logging.getLogger(__name__)

ACTOR = "abis:mosip"
_INLINE = frozenset({Operation.PING, Operation.PENDING_JOBS, Operation.REFERENCE_COUNT})

Send = Callable[[Delivery, bytes], None]


class AbisAdapter:
    def __init__(
        self,
        references: ReferenceDatabase,
        datashare: DatashareClient | None,
        journal: JobJournal,
        audit_log: TransparencyLog,
        pseudonym_key: bytes,
        send: Send,
        workers: int = 2,
    ) -> None:
        self._references, self._datashare, self._journal = references, datashare, journal
        self._audit, self._pseudonym_key, self._send = audit_log, pseudonym_key, send
        self._workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="abis-worker")

    def close(self) -> None:
        """Finish the jobs in hand; those not started stay unacknowledged and come back on restart."""
        self._workers.shutdown(wait=True, cancel_futures=True)

    # -- intake (the broker's receiver thread) ----------------------------------------------------

    def take(self, delivery: Delivery) -> None:
        try:
            request = read_request(delivery.body)
        except AbisRefusal as refusal:
            request_id = request_id_of(delivery.body)
            key = request_id or f"message:{delivery.message_id}"
            job = self._journal.receive(key, "refused")
            if job.state is JobState.ANSWERED and job.answer is not None:
                self._replay(delivery, job.answer, "mosip.abis.invalid", request_id)
                return
            reply = failure(_operation_name(delivery.body), request_id, refusal.reason)
            self._finish(delivery, key, reply, "mosip.abis.invalid", request_id, "")
            return
        job = self._journal.receive(request.request_id, request.operation.value)
        if job.state is JobState.ANSWERED and job.answer is not None:
            log.info("request answered before: sending the stored answer again (%s)", request.operation.value)
            self._replay(delivery, job.answer, request.operation.value, request.request_id)
            return
        if request.operation in _INLINE:
            self._run(delivery, request, job)
        else:
            self._workers.submit(self._run, delivery, request, job)

    # -- the work ---------------------------------------------------------------------------------

    def _run(self, delivery: Delivery, request: Request, job: Job) -> None:
        try:
            reply = self._serve(request, job)
        except AbisRefusal as refusal:
            reply = failure(request.operation.value, request.request_id, refusal.reason)
        except Unavailable as error:
            # A busy store or a full disk: not MOSIP's fault, and not for good. Unanswered and
            # unacknowledged, the request comes back when the broker delivers it again.
            log.warning("%s deferred: %s", request.operation.value, type(error).__name__)
            return
        except SafePassageError as error:
            log.warning("%s failed: %s", request.operation.value, type(error).__name__)
            reply = failure(request.operation.value, request.request_id, FailureReason.INTERNAL_ERROR)
        except Exception:
            # Unacknowledged, it comes back: a bug must not be answered as if MOSIP's data were bad.
            log.exception("%s failed unexpectedly; left for redelivery", request.operation.value)
            return
        try:
            self._finish(
                delivery,
                request.request_id,
                reply,
                request.operation.value,
                request.request_id,
                request.reference_id,
            )
        except SafePassageError as error:
            log.warning(
                "answer not sent (%s); the broker will deliver the request again", type(error).__name__
            )

    def _serve(self, request: Request, job: Job) -> dict[str, object]:
        operation, request_id = request.operation.value, request.request_id
        if request.operation is Operation.PING:
            return answer(operation, request_id)
        if request.operation is Operation.PENDING_JOBS:
            # This request is itself in the journal as received: it is not a pending job.
            return answer(operation, request_id, {"jobscount": str(max(self._journal.pending() - 1, 0))})
        if request.operation is Operation.REFERENCE_COUNT:
            return answer(operation, request_id, {"count": str(self._references.count())})
        if request.operation is Operation.INSERT:
            self._insert(request, job)
            return answer(operation, request_id)
        if request.operation is Operation.DELETE:
            self._delete(request, job)
            return answer(operation, request_id)
        return answer(operation, request_id, {"candidateList": self._identify(request)})

    def _insert(self, request: Request, job: Job) -> None:
        references = self._references
        if references.exists(request.reference_id):
            if job.writes == request.reference_id:
                return  # this job wrote it before a crash: the insert succeeded
            raise AbisRefusal(FailureReason.REFERENCE_ID_EXISTS, "referenceId already exists")
        template = references.embed(read_cbeff_faces(self._fetch(request.reference_url)))
        self._journal.writing(job.key, request.reference_id)
        references.insert(request.reference_id, template)

    def _delete(self, request: Request, job: Job) -> None:
        references = self._references
        if not references.exists(request.reference_id) and job.writes == request.reference_id:
            return  # this job deleted it before a crash: the delete succeeded
        if references.exists(request.reference_id):
            self._journal.writing(job.key, request.reference_id)
        references.delete(request.reference_id)

    def _fetch(self, url: str) -> bytes:
        if self._datashare is None:
            raise AbisRefusal(FailureReason.DATASHARE_UNAVAILABLE, "no datashare client is configured")
        return self._datashare.fetch(url)

    def _identify(self, request: Request) -> dict[str, object]:
        references = self._references
        if request.reference_url:
            probe = references.embed(read_cbeff_faces(self._fetch(request.reference_url)))
        else:
            probe = references.template(request.reference_id)
        duplicates = references.identify(
            probe,
            exclude=request.reference_id,
            gallery=request.gallery,
            max_results=request.max_results,
            fpir=request.fpir,
        )
        candidates = [
            {
                "referenceId": d.reference_id,
                "analytics": {"internalScore": f"{d.score:.6f}", "rank": str(d.rank)},
                "modalities": [{"biometricType": "FACE", "analytics": {"internalScore": f"{d.score:.6f}"}}],
            }
            for d in duplicates
        ]
        return {"count": str(len(candidates)), "candidates": candidates}

    # -- answering --------------------------------------------------------------------------------

    def _replay(self, delivery: Delivery, stored: bytes, operation: str, request_id: str) -> None:
        """Send a stored answer again (a redelivery after a crash, or a requestId sent again)."""
        self._send(delivery, stored)
        details = {"request_sha256": pseudonym(self._pseudonym_key, request_id or delivery.message_id)}
        gallery_id = self._references.gallery_id
        self._audit.append(LogEvent.now(ACTOR, operation, gallery_id, "REPLAYED", details))

    def _finish(
        self,
        delivery: Delivery,
        key: str,
        reply: dict[str, object],
        operation: str,
        request_id: str,
        reference_id: str,
    ) -> None:
        """Journal the answer, send it with the acknowledgement, then log the message."""
        body = encode_answer(reply)
        self._journal.answered(key, body)
        self._send(delivery, body)
        reason = reply.get("failureReason")
        details = {"request_sha256": pseudonym(self._pseudonym_key, request_id or delivery.message_id)}
        if reference_id:
            details["reference_sha256"] = pseudonym(self._pseudonym_key, reference_id)
        candidate_list = reply.get("candidateList")
        if isinstance(candidate_list, dict):
            details["candidates"] = str(candidate_list.get("count", "0"))
        self._audit.append(
            LogEvent.now(
                ACTOR,
                operation,
                self._references.gallery_id,
                "OK" if reason is None else f"FAILURE_{reason}",
                details,
            )
        )


def _operation_name(body: bytes) -> str:
    """The id a refused message named, when it is an operation (the answer repeats it); else ""."""
    name = body[:4096].decode("utf-8", "replace")
    return next((op.value for op in Operation if f'"{op.value}"' in name), "")
