"""The error hierarchy: every error is transient or terminal, with a stable code of its own."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from ground.errors import (LearnrightError, Terminal, TerminalError, Transient, TransientError, error_classes,
                           error_code)

PACKAGES = ("ground", "schemas", "ledger", "consumers", "producers", "learnright")

# Codes are stored in quarantine rows and dead-letter headers: renaming one orphans
# stored rows, so this list only ever grows. A test that fails here is a migration to plan.
STORED_CODES = {
    "undecodable", "unknown_schema", "invalid_value", "unpriceable", "unknown_source", "no_license",
    "correction_invalid", "event_conflict", "correction_pending",
}


def every_error_class() -> dict[str, type[LearnrightError]]:
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, name + "."):
            importlib.import_module(module.name)
    return error_classes()


def test_every_error_is_exactly_one_of_transient_and_terminal_with_a_unique_code():
    classes = every_error_class()
    assert len(classes) >= 25
    for code, cls in classes.items():
        assert issubclass(cls, Transient) != issubclass(cls, Terminal), cls
        assert cls.code == code
    assert STORED_CODES <= set(classes)


def test_a_class_that_is_neither_or_reuses_a_code_is_refused_when_defined():
    with pytest.raises(TypeError, match="must be exactly one of Transient and Terminal"):
        type("Vague", (LearnrightError,), {"code": "vague"})
    with pytest.raises(TypeError, match="must declare its own snake_case `code`"):
        type("Uncoded", (TerminalError,), {})
    with pytest.raises(TypeError, match="'no_license' of Copy is already used by NoLicenseError"):
        every_error_class()
        type("Copy", (TransientError,), {"code": "no_license"})


def test_the_stored_code_of_an_error():
    from ledger.errors import LedgerLockedError, NoLicenseError
    assert error_code(NoLicenseError("no license for src-a")) == "no_license"
    assert isinstance(LedgerLockedError("held"), Transient)
    assert error_code(ValueError("not ours")) == "internal"
