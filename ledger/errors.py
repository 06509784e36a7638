"""Errors of the ledger."""

from ground.errors import ConfigError, LearnrightError, TerminalError


class PricingError(TerminalError):
    """An event cannot be priced: unknown source, no license in force, unit mismatch."""


class UnknownSourceError(PricingError):
    """The event names a source no license file declares."""


class NoLicenseError(PricingError):
    """No license version is in force for the source and platform at occurred_at."""


class LicenseFileError(ConfigError):
    """A license file is malformed; the message names the entry and the field."""


class LedgerError(LearnrightError):
    """The ledger file cannot be opened, migrated or written."""


class LedgerLockedError(LedgerError):
    """Another process holds the ledger file as its writer."""


class DuplicateEventError(LedgerError):
    """A batch built without probing the ledger holds an event it has booked already."""


class LedgerVersionError(LedgerError):
    """The ledger file was written by a newer Learnright than this one."""


class PeriodError(TerminalError):
    """A period string is not YYYY-MM, or the period cannot be closed yet."""
