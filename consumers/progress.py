"""Whether the ledger consumer makes progress, and how long it waits before trying a failed batch again.

A batch that fails to apply (the dead-letter topic refuses a letter, DuckDB refuses the
append, building it raises) is not skipped: the consumer rewinds every partition it owns
to the offsets stored in the ledger and reads the same records again. Each failure in a
row waits longer before the retry (:func:`Progress.backoff_s`).

**Stalled** means: :data:`STALL_AFTER` batches in a row failed to apply with no batch
committed in between. Every failure rewinds to the ledger's offsets, so the ledger did
not move across those attempts: the same records were refused each time. The consumer
stays stalled until a batch commits. While stalled, ``learnright serve`` answers
``/readyz`` with 503 and exports ``learnright_consumer_stalled 1``; ``learnright consume
--until-idle`` gives up with :class:`~consumers.service.ConsumerHaltError`.
"""

from __future__ import annotations

STALL_AFTER = 3
"""Failed batches in a row, with no commit between them, after which the consumer is stalled."""

FIRST_BACKOFF_S = 0.5
"""Wait before retrying after the first failure; it doubles with each failure in a row."""

MAX_BACKOFF_S = 30.0
"""The longest wait between two attempts, however many failed."""


class Progress:
    """Failed batches since the last commit, as the polling thread and the writer thread see them.

    Only one thread changes it at a time: the writer thread counts a commit while it
    runs; the polling thread counts a failure once the writer has stopped on it.
    """

    def __init__(self, stall_after: int = STALL_AFTER):
        self.stall_after = stall_after
        self.failures = 0
        """Batches that failed to apply since the last one committed."""

    @property
    def stalled(self) -> bool:
        return self.failures >= self.stall_after

    def committed(self) -> None:
        """A batch is in the ledger: the consumer moves again."""
        self.failures = 0

    def failed(self) -> int:
        """Counts a failed batch; returns how many failed in a row."""
        self.failures += 1
        return self.failures

    def backoff_s(self) -> float:
        """Seconds to wait before the next attempt."""
        if not self.failures:
            return 0.0
        return min(FIRST_BACKOFF_S * 2 ** min(self.failures - 1, 16), MAX_BACKOFF_S)
