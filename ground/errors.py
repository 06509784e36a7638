"""The one exception hierarchy of Learnright.

Every error says what failed, with which value, and where. Two markers tell a caller
what to do with it: a :class:`TransientError` may succeed when retried (the broker is
down); a :class:`TerminalError` never will (a malformed event) and belongs in the
dead-letter topic and quarantine.
"""

from __future__ import annotations


class LearnrightError(Exception):
    """Root of every error Learnright raises on purpose."""


class TransientError(LearnrightError):
    """Retrying the same operation later may succeed."""


class TerminalError(LearnrightError):
    """Retrying the same input will fail the same way."""


class ConfigError(TerminalError):
    """A setting, file or command-line value is missing or malformed."""


class BrokerError(TransientError):
    """The Kafka broker could not be started, reached or used."""


class ValidationError(TerminalError):
    """An input value breaks the contract; ``field`` and ``value`` say which.

    Attributes:
        field: dotted path of the offending field, e.g. ``attributions[1].weight``.
        value: the offending value, as received.
        where: optional location, e.g. ``line 17 of usage.jsonl``.
    """

    def __init__(self, field: str, value: object, problem: str, where: str | None = None):
        self.field = field
        self.value = value
        self.problem = problem
        self.where = where
        location = f" in {where}" if where else ""
        super().__init__(f"{field} {problem} (got {value!r}){location}")

    def at(self, where: str) -> "ValidationError":
        """Returns the same error located at ``where`` (a line, a record, an offset)."""
        return type(self)(self.field, self.value, self.problem, where)
