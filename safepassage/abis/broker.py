"""The STOMP link to MOSIP's message broker: deliveries in, answers out, each answer one transaction.

MOSIP's registration processor talks JMS to ActiveMQ (Artemis, or Classic); over STOMP, a frame
with a ``content-length`` header is (and arrives as) a JMS BytesMessage, one without a
TextMessage. An answer goes out in the type its request came in, so a deployment configured for
either gets what it reads. Subscriptions acknowledge each message individually; an answer is sent
and its request acknowledged in one STOMP transaction, so the broker never holds one without the
other (see journal). STOMP 1.1 is spoken: ActiveMQ Classic 5.17 and Artemis both do.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import stomp
from stomp.utils import Frame

from safepassage.abis.errors import AbisError
from safepassage.core.errors import Unavailable

__all__ = ["BrokerLink", "BrokerSettings", "Delivery"]

log = logging.getLogger(__name__)


class BrokerUnavailable(AbisError, Unavailable):
    """The broker cannot be reached, or refused the connection."""


@dataclass(frozen=True)
class BrokerSettings:
    host: str
    port: int
    inbound_queue: str
    outbound_queue: str
    username: str = ""
    password: str = ""
    tls_ca_file: str | None = None
    tls: bool = False
    prefetch: int = 64
    heartbeat_ms: int = 10_000


@dataclass(frozen=True)
class Delivery:
    """One message from the inbound queue (its body is never logged)."""

    message_id: str
    subscription: str
    body: bytes
    as_bytes: bool  # a BytesMessage (content-length present); else a TextMessage
    redelivered: bool


def _destination(queue: str) -> str:
    return queue if queue.startswith("/") else f"/queue/{queue}"


class _Listener(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, link: BrokerLink) -> None:
        self._link = link

    def on_message(self, frame: Frame) -> None:
        headers = frame.headers
        body = frame.body if isinstance(frame.body, bytes) else str(frame.body).encode("utf-8")
        delivery = Delivery(
            str(headers.get("message-id", "")),
            str(headers.get("subscription", "")),
            body,
            "content-length" in headers,
            headers.get("redelivered") == "true",
        )
        self._link.deliver(delivery)

    def on_error(self, frame: Frame) -> None:
        log.error("broker error frame: %s", frame.headers.get("message", "")[:200])

    def on_disconnected(self) -> None:
        self._link.disconnected.set()


class BrokerLink:
    """One STOMP connection: subscribed to the inbound queue, answering on the outbound one."""

    def __init__(self, settings: BrokerSettings, on_delivery: Callable[[Delivery], None]) -> None:
        self.settings = settings
        self._on_delivery = on_delivery
        self.disconnected = threading.Event()
        self._send_lock = threading.Lock()
        self._connection: stomp.Connection11 | None = None

    def deliver(self, delivery: Delivery) -> None:
        try:
            self._on_delivery(delivery)
        except Exception:  # the receiver thread must live on; the message stays unacknowledged
            log.exception("a delivery could not be taken in; the broker will deliver it again")

    def connect(self) -> None:
        s = self.settings
        beat = s.heartbeat_ms
        connection = stomp.Connection11(
            [(s.host, s.port)],
            heartbeats=(beat, beat),
            auto_decode=False,
            auto_content_length=False,
            reconnect_attempts_max=1,
        )
        if s.tls:
            # Verified against the configured CA (or the system's), host name included.
            connection.set_ssl(for_hosts=[(s.host, s.port)], ca_certs=s.tls_ca_file, verify=True)
        connection.set_listener("abis", _Listener(self))
        self.disconnected.clear()
        try:
            connection.connect(s.username or None, s.password or None, wait=True)
        except (stomp.exception.StompException, OSError) as error:
            raise BrokerUnavailable(f"cannot connect to the broker at {s.host}:{s.port}: {error}") from None
        connection.subscribe(
            _destination(s.inbound_queue),
            id="abis-inbound",
            ack="client-individual",
            headers={"activemq.prefetchSize": str(s.prefetch)},
        )
        self._connection = connection
        log.info("subscribed to %s at %s:%d", s.inbound_queue, s.host, s.port)

    def answer(self, delivery: Delivery, body: bytes) -> None:
        """Send ``body`` on the outbound queue and acknowledge ``delivery``: both, or neither."""
        connection = self._connection
        if connection is None or not connection.is_connected():
            raise BrokerUnavailable("not connected to the broker")
        headers = {"content-length": str(len(body))} if delivery.as_bytes else {}
        with self._send_lock:
            try:
                transaction = connection.begin()
                connection.send(
                    _destination(self.settings.outbound_queue), body, headers=headers, transaction=transaction
                )
                connection.ack(delivery.message_id, delivery.subscription, transaction=transaction)
                connection.commit(transaction)
            except (stomp.exception.StompException, OSError) as error:
                raise BrokerUnavailable(f"cannot answer through the broker: {error}") from None

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_connected():
            with contextlib.suppress(stomp.exception.StompException, OSError):
                connection.disconnect()
