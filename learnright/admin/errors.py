"""Errors of the admin interface, and the one way an error crosses the socket."""

from __future__ import annotations

from ground.errors import LearnrightError, TerminalError, TransientError, error_classes


class AdminError(TerminalError):
    """The service refused or failed a command for a reason that has no error class here; the message says why."""

    code = "admin_failed"


class AdminUnavailableError(TransientError):
    """A service answered on the admin socket but stopped answering before a command finished."""

    code = "admin_unavailable"


def error_to_json(error: LearnrightError) -> dict:
    """What crosses the socket: the stable code and the message, never a traceback."""
    return {"error": error.code, "message": str(error)}


def error_from_json(answer: dict) -> LearnrightError:
    """The error a service answered, as its own class when this process knows the code (else :class:`AdminError`)."""
    message = str(answer.get("message", "the service gave no reason"))
    known = error_classes().get(str(answer.get("error", "")))
    if known is not None:
        try:
            return known(message)
        except Exception:  # noqa: BLE001 - a class with its own constructor: fall back to the plain error
            pass
    return AdminError(message)
