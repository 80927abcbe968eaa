"""Where a consumer puts a message it cannot store: the ``DEADLETTER`` stream.

A message that decodes but cannot be stored, or does not decode at all, must
neither stop its consumer nor vanish. :class:`DeadLetters` publishes a copy of
it, payload unchanged, on ``plant.deadletter.<consumer>`` with headers that say
where it came from and why it was refused (docs/nats.md lists them), waits for
JetStream to have stored it, and only then lets the consumer settle the
original. It counts what it stored by consumer and :class:`RefusalKind` for
``/metrics`` and logs one line per message.

The stream itself is made by the composition root (``plantcore.streams``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

log = logging.getLogger(__name__)

DEADLETTER_STREAM = "DEADLETTER"
DEADLETTER_SUBJECT_PREFIX = "plant.deadletter"

ORIGINAL_SUBJECT = "Plantcore-Original-Subject"
ORIGINAL_STREAM = "Plantcore-Original-Stream"
ORIGINAL_SEQUENCE = "Plantcore-Original-Sequence"
CONSUMER = "Plantcore-Consumer"
REASON_KIND = "Plantcore-Reason-Kind"
REASON = "Plantcore-Reason"

# A reason quotes the data it refuses; a header line must stay short and on one line.
_MAX_REASON_CHARS = 1000


class RefusalKind(StrEnum):
    """Why a message was dead-lettered: the ``kind`` label of the metric."""

    # Does not follow its subject's contract: not JSON, a field missing or of the
    # wrong type, another schema, another device than the subject's.
    MALFORMED = "malformed"
    # A string holds a control character (NUL among them) or is not valid Unicode.
    CONTROL_CHARACTER = "control_character"
    # A device, tag or alarm condition name that no plant file can declare.
    UNKNOWN_NAME = "unknown_name"
    # Before 1970, or further ahead of the plant core's clock than a clock can be wrong.
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    # Not finite, or beyond what its column (a double, a 32-bit count) holds.
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    # Passed every check, and the store refused it for the data itself.
    REFUSED_BY_STORE = "refused_by_store"


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: RefusalKind
    reason: str


class DeadLetterNotStored(Exception):
    """JetStream did not confirm the dead letter: the original must not be settled."""


def one_line(text: str) -> str:
    """``text`` as printable ASCII on one line, for a header or a log line.

    Other characters are escaped as Python writes them (``\\x00``, ``\\u00e9``);
    a reason that already quotes a value with ``repr`` is left as it reads.
    """
    return "".join(
        char if char.isascii() and char.isprintable() else char.encode("unicode_escape").decode()
        for char in text[:_MAX_REASON_CHARS]
    )


class DeadLetters:
    """Publishes refused messages into the dead-letter stream and counts them.

    One instance is shared by the consumers of a process, so that ``/metrics``
    sees every consumer's count.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        subject_prefix: str = DEADLETTER_SUBJECT_PREFIX,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._js = js
        self._subject_prefix = subject_prefix
        self._timeout = timeout_seconds
        self._counts: Counter[tuple[str, str]] = Counter()

    def counts(self) -> Mapping[tuple[str, str], int]:
        """Messages dead-lettered since the process started, by (consumer, kind)."""
        return dict(self._counts)

    async def put(self, msg: Msg, consumer: str, refusal: Refusal) -> None:
        """Store a copy of ``msg`` with why ``consumer`` refused it.

        Raises :class:`DeadLetterNotStored` unless JetStream confirmed it. The
        copy carries a ``Nats-Msg-Id`` made of the consumer and the original's
        place, so a copy published again (the original redelivered after a lost
        ack) within the stream's duplicate window is stored, counted and logged once.
        """
        meta = msg.metadata
        sequence = meta.sequence.stream
        headers = {
            "Nats-Msg-Id": f"{consumer}:{meta.stream}:{sequence}",
            ORIGINAL_SUBJECT: msg.subject,
            ORIGINAL_STREAM: meta.stream,
            ORIGINAL_SEQUENCE: str(sequence),
            CONSUMER: consumer,
            REASON_KIND: refusal.kind.value,
            REASON: one_line(refusal.reason),
        }
        subject = f"{self._subject_prefix}.{consumer}"
        try:
            stored = await self._js.publish(
                subject, msg.data, headers=headers, timeout=self._timeout
            )
        except (nats.errors.Error, OSError) as exc:
            raise DeadLetterNotStored(f"{subject}: {exc!r}") from exc
        if stored.duplicate:
            return  # counted and logged when it was first stored
        self._counts[(consumer, refusal.kind.value)] += 1
        log.warning(
            "%s: dead-lettered %s (stream %s seq %d) to %s: %s: %s",
            consumer,
            msg.subject,
            meta.stream,
            sequence,
            subject,
            refusal.kind.value,
            headers[REASON],
        )
