"""The one exception hierarchy of Learnright.

Every error says what failed, with which value, and where. Two marker mixins tell a
caller what to do with it: a :class:`Transient` error may succeed when retried (the
broker is down, the ledger file is held by another writer); a :class:`Terminal` one
never will (a malformed event) and belongs in the dead-letter topic and quarantine.

Guarantees, checked when each class is defined (so a mistake fails at import):
  * every concrete error is exactly one of :class:`Transient` and :class:`Terminal`;
    only bases declared with ``abstract=True`` are neither;
  * every concrete error declares its own ``code``: a stable snake_case string, unique
    across the project. Codes, not class names, are what is stored (quarantine rows,
    dead-letter headers) and matched (``quarantine replay --error CODE``), so a class
    may be renamed or moved without orphaning stored rows.
"""

from __future__ import annotations

import re
from typing import ClassVar

_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
_BY_CODE: dict[str, type["LearnrightError"]] = {}


class Transient(Exception):
    """Marker mixin: retrying the same operation later may succeed."""


class Terminal(Exception):
    """Marker mixin: retrying the same input will fail the same way."""


class LearnrightError(Exception):
    """Root of every error Learnright raises on purpose.

    Attributes:
        code: the stable code of the error's class (see the module docstring).
    """

    code: ClassVar[str] = ""

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        kinds = [marker.__name__ for marker in (Transient, Terminal) if issubclass(cls, marker)]
        if len(kinds) != 1:
            raise TypeError(f"{cls.__module__}.{cls.__qualname__} must be exactly one of Transient and Terminal"
                            f" (it is {' and '.join(kinds) or 'neither'})")
        code = cls.__dict__.get("code")
        if not isinstance(code, str) or not _CODE.match(code):
            raise TypeError(f"{cls.__module__}.{cls.__qualname__} must declare its own snake_case `code`"
                            f" (got {code!r})")
        known = _BY_CODE.setdefault(code, cls)
        if (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):  # a reload is no clash
            raise TypeError(f"error code {code!r} of {cls.__qualname__} is already used by {known.__qualname__}")


class TransientError(Transient, LearnrightError, abstract=True):
    """Base of the simple transient errors."""


class TerminalError(Terminal, LearnrightError, abstract=True):
    """Base of the simple terminal errors."""


def error_code(error: BaseException) -> str:
    """The stable code stored for ``error``: its class's ``code``, or ``internal`` for a foreign error."""
    return error.code if isinstance(error, LearnrightError) and error.code else "internal"


def error_classes() -> dict[str, type[LearnrightError]]:
    """Every concrete error class defined so far, by code (modules not yet imported are missing)."""
    return dict(_BY_CODE)


class ConfigError(TerminalError):
    """A setting, file or command-line value is missing or malformed."""

    code = "config_invalid"


class BrokerError(TransientError):
    """The Kafka broker could not be started, reached or used."""

    code = "broker_unavailable"


class PostgresServerError(TransientError):
    """The project's own PostgreSQL (`learnright postgres up`) could not be started, reached or stopped."""

    code = "postgres_server_unavailable"


class ValidationError(TerminalError):
    """An input value breaks the contract; ``field`` and ``value`` say which.

    Attributes:
        field: dotted path of the offending field, e.g. ``attributions[1].weight``.
        value: the offending value, as received.
        where: optional location, e.g. ``line 17 of usage.jsonl``.
    """

    code = "invalid_value"

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
