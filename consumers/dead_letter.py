"""Dead letters: each quarantined record, copied to the dead-letter topic with why it was refused.

A dead letter carries the record's original key, value and headers, plus the headers
``learnright.original.topic|partition|offset`` and ``learnright.error.code|class|message``.
The quarantine row in the ledger keeps the record whole; the dead letter is a copy for
people and tools that watch the topic, so it gives way when it cannot be sent whole.

Guarantees:
  * Every letter fits under the dead-letter producer's ``max_request_size``
    (:data:`MAX_REQUEST_BYTES`), measured as kafka-python measures it before sending,
    so a record the broker accepted on a usage topic never makes its letter unsendable.
  * A letter that would not fit whole is cut, in this order, until it fits: the error
    message to :data:`ERROR_MESSAGE_LIMIT` bytes, then the value (its first bytes are
    kept), then the original headers (all dropped), then the key. Header
    ``learnright.truncated`` then holds the original value's length in bytes;
    ``learnright.truncated.headers`` the number of original headers dropped and
    ``learnright.truncated.key`` the original key's length, when those were cut too.
  * A letter that fits whole is sent unchanged: the same bytes as before this rule.
  * :meth:`DeadLetterSender.send` returns only once the broker acknowledged every letter
    (``acks=all``); the consumer commits the batch after that. Letters are sent at least
    once: a batch that fails after its letters were acknowledged sends them again when it
    is retried. Match letters to records by the ``learnright.original.*`` headers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.record.default_records import DefaultRecordBatchBuilder

from ground.errors import BrokerError
from ledger.core.records import QuarantineRow

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1_048_576
"""The dead-letter producer's ``max_request_size`` (kafka-python's default, set explicitly)."""

ERROR_MESSAGE_LIMIT = 1_024
"""Bytes of the error message a cut letter keeps (UTF-8, never splitting a character)."""

TRUNCATED = "learnright.truncated"

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """One record as it goes to the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    headers: Headers

    @property
    def size(self) -> int:
        return letter_size(self.key, self.value, self.headers)

    @property
    def truncated(self) -> bool:
        return any(name == TRUNCATED for name, _ in self.headers)


def letter_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """Bytes kafka-python counts against ``max_request_size`` for this record (format v2, alone in its batch)."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers))


def dead_letter(row: QuarantineRow, limit: int = MAX_REQUEST_BYTES) -> DeadLetter:
    """The dead letter of ``row``: whole when it fits under ``limit`` bytes, else cut as the module says."""
    provenance: Headers = (
        ("learnright.original.topic", row.topic.encode()),
        ("learnright.original.partition", str(row.partition).encode()),
        ("learnright.original.offset", str(row.offset).encode()),
        ("learnright.error.code", row.error_code.encode()),
        ("learnright.error.class", row.error_class.encode()),
    )
    message = row.reason.encode()
    whole = DeadLetter(key=row.key, value=row.value,
                       headers=(*row.headers, *provenance, ("learnright.error.message", message)))
    if whole.size <= limit:
        return whole
    marks: Headers = (*provenance, ("learnright.error.message", _cut_utf8(message, ERROR_MESSAGE_LIMIT)),
                      (TRUNCATED, str(len(row.value or b"")).encode()))
    letter = _fill(row.key, row.value, (*row.headers, *marks), limit)
    if letter is None and row.headers:
        marks = (*marks, ("learnright.truncated.headers", str(len(row.headers)).encode()))
        letter = _fill(row.key, row.value, marks, limit)
    if letter is None:
        marks = (*marks, ("learnright.truncated.key", str(len(row.key or b"")).encode()))
        key = _longest_prefix(row.key or b"", lambda k: letter_size(k, _empty(row.value), marks) <= limit)
        letter = _fill(key, row.value, marks, limit)
    if letter is None:
        raise ValueError(f"a dead letter of {row.topic}[{row.partition}]@{row.offset} cannot fit {limit} bytes"
                         " even with its key and value empty")
    return letter


class DeadLetterSender:
    """Sends dead letters to ``topic`` and waits until the broker has them all.

    Its producer is made on first use, and made again after :meth:`reset`: an idempotent
    producer whose batch the broker refused aborts every later batch with the same error,
    even once the broker would take it, so a retry needs a fresh one.
    """

    def __init__(self, bootstrap_servers: str, client_id: str, topic: str):
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.topic = topic
        self._producer: KafkaProducer | None = None

    def connect(self) -> None:
        """Makes the producer now (so a bad address fails at start). Raises KafkaError."""
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all",
                                           enable_idempotence=True, client_id=self.client_id,
                                           max_request_size=MAX_REQUEST_BYTES)

    def send(self, rows: Sequence[QuarantineRow]) -> None:
        """Sends the dead letter of each row; returns once all are acknowledged.

        Raises:
            BrokerError: a letter could not be sent or was not acknowledged.
        """
        if not rows:
            return
        try:
            self.connect()
        except KafkaError as exc:
            raise BrokerError(f"cannot connect the dead-letter producer to Kafka at {self.bootstrap_servers}:"
                              f" {exc}") from exc
        futures = []
        for row in rows:
            letter = dead_letter(row)
            if letter.truncated:
                log.warning("the dead letter of %s[%d]@%d is cut to %d bytes to fit the producer's limit; the"
                            " quarantine row keeps the record whole", row.topic, row.partition, row.offset,
                            letter.size)
            try:
                futures.append(self._producer.send(self.topic, key=letter.key, value=letter.value,
                                                   headers=list(letter.headers)))
            except KafkaError as exc:
                raise BrokerError(f"cannot send the dead letter of {row.topic}[{row.partition}]@{row.offset} to"
                                  f" {self.topic}: {exc}") from exc
        self._producer.flush()
        for future in futures:
            try:
                future.get(timeout=30)
            except KafkaError as exc:
                raise BrokerError(f"dead-letter topic {self.topic} did not acknowledge: {exc}") from exc

    def reset(self) -> None:
        """Closes the producer; the next :meth:`send` makes a new one."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=5)
            except KafkaError as exc:  # dropped either way; its unacknowledged letters are sent again
                log.warning("closing the dead-letter producer failed: %s", exc)

    def close(self) -> None:
        self.reset()


def _fill(key: bytes | None, value: bytes | None, headers: Headers, limit: int) -> DeadLetter | None:
    """The letter with as much of ``value`` as fits beside ``key`` and ``headers``; None if none of it does."""
    if letter_size(key, _empty(value), headers) > limit:
        return None
    if value is None:
        return DeadLetter(key=key, value=None, headers=headers)
    kept = _longest_prefix(value, lambda v: letter_size(key, v, headers) <= limit)
    return DeadLetter(key=key, value=kept, headers=headers)


def _longest_prefix(data: bytes, fits) -> bytes:
    """The longest prefix of ``data`` that ``fits`` (size grows with the length: a binary search)."""
    view = memoryview(data)  # sizes depend on lengths alone: measure views, copy once
    low, high = 0, len(data)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(view[:middle]):
            low = middle
        else:
            high = middle - 1
    return data[:low]


def _empty(value: bytes | None) -> bytes | None:
    return None if value is None else b""


def _cut_utf8(text: bytes, limit: int) -> bytes:
    """The first ``limit`` bytes of UTF-8 ``text``, without a partial character at the end."""
    return text[:limit].decode("utf-8", "ignore").encode()
