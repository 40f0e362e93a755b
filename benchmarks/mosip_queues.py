"""MOSIP's registration processor as the adapter sees it: requests in on one queue, answers on another."""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from dataclasses import dataclass

import stomp

INBOUND, OUTBOUND = "mosip-to-abis1", "abis1-to-mosip"


def request(operation: str, **fields: object) -> dict[str, object]:
    """A well-formed request of ``mosip.abis.<operation>``; ``fields`` add or override."""
    now = datetime.datetime.now(datetime.UTC)
    body: dict[str, object] = {
        "id": f"mosip.abis.{operation}",
        "version": "1.1",
        "requestId": str(uuid.uuid4()),
        "requesttime": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


@dataclass(frozen=True)
class Answer:
    body: dict[str, object]
    as_bytes: bool  # it came as a BytesMessage (content-length), else a TextMessage

    @property
    def failure(self) -> str | None:
        return None if self.body.get("returnValue") == "1" else str(self.body.get("failureReason"))


class _Collector(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, mosip: Mosip) -> None:
        self._mosip = mosip

    def on_message(self, frame: stomp.utils.Frame) -> None:
        body = frame.body if isinstance(frame.body, bytes) else str(frame.body).encode()
        self._mosip.collect(Answer(json.loads(body), "content-length" in frame.headers))


class Mosip:
    def __init__(self, port: int) -> None:
        self._answers: list[Answer] = []
        self._changed = threading.Condition()
        self._connection = stomp.Connection11(
            [("127.0.0.1", port)], auto_decode=False, auto_content_length=False
        )
        self._connection.set_listener("mosip", _Collector(self))
        self._connection.connect(wait=True)
        self._connection.subscribe(f"/queue/{OUTBOUND}", id="mosip", ack="auto")

    def collect(self, answer: Answer) -> None:
        with self._changed:
            self._answers.append(answer)
            self._changed.notify_all()

    def close(self) -> None:
        self._connection.disconnect()

    def send(self, message: dict[str, object] | bytes, *, as_bytes: bool = True) -> str:
        """Put a request on the inbound queue; returns its requestId ("" for raw bytes)."""
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        headers = {"content-length": str(len(body))} if as_bytes else {}
        self._connection.send(f"/queue/{INBOUND}", body, headers=headers)
        return "" if isinstance(message, bytes) else str(message.get("requestId", ""))

    def answers_to(self, request_id: str) -> list[Answer]:
        with self._changed:
            return [a for a in self._answers if a.body.get("requestId") == request_id]

    def wait(self, request_id: str, timeout_s: float = 30.0) -> Answer:
        """The (first) answer to ``request_id``."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = [a for a in self._answers if a.body.get("requestId") == request_id]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no answer to request {request_id} in {timeout_s:.0f} s")
                self._changed.wait(left)

    def ask(
        self, message: dict[str, object] | bytes, *, as_bytes: bool = True, timeout_s: float = 30.0
    ) -> Answer:
        request_id = self.send(message, as_bytes=as_bytes)
        return self.wait(request_id, timeout_s)

    def all_answers(self) -> list[Answer]:
        with self._changed:
            return list(self._answers)
