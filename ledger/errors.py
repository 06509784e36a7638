"""Errors of the ledger: pricing, license files, periods and the ledger file itself."""

from ground.errors import ConfigError, LearnrightError, Terminal, TerminalError, Transient, ValidationError


class PricingError(TerminalError):
    """An event cannot be priced: unknown source, no license in force, unit mismatch."""

    code = "unpriceable"


class UnknownSourceError(PricingError):
    """The event names a source no license file declares."""

    code = "unknown_source"


class NoLicenseError(PricingError):
    """No license version is in force for the source and platform at occurred_at."""

    code = "no_license"


class UnlicensedUseError(PricingError):
    """The source had a license for the platform, but its consent ended (``effective_to`` or a revocation).

    Batch building books such a use as unlicensed use (:mod:`ledger.core.unlicensed`), never
    quarantines it: ``end`` says which version ended and why.
    """

    code = "unlicensed_use"

    def __init__(self, message: str, end=None):
        super().__init__(message)
        self.end = end


class LicenseFileError(ConfigError):
    """A license file is malformed; the message names the entry and the field."""

    code = "license_file_invalid"


class LedgerError(LearnrightError, abstract=True):
    """The ledger file cannot be opened, migrated or written."""


class LedgerFileError(Terminal, LedgerError):
    """The ledger file is missing, unreadable, unmigrated, or lacks what was asked of it."""

    code = "ledger_unusable"


class LedgerLockedError(Transient, LedgerError):
    """Another process holds the ledger file as its writer; it may let go."""

    code = "ledger_locked"


class DuplicateEventError(Terminal, LedgerError):
    """A batch built without probing the ledger holds an event it has booked already."""

    code = "duplicate_event"


class StaleBatchError(Transient, LedgerError):
    """A batch starts before what the ledger has booked of one of its partitions: another writer
    booked those records after this one read them (a rebalance). Nothing was appended; the
    consumer reads again from the ledger's offsets."""

    code = "stale_batch"


class EntryOriginError(Terminal, LedgerError):
    """An entry to append has no origin in the log (no stream): its identity and digest would collide."""

    code = "entry_without_origin"


class LedgerVersionError(Terminal, LedgerError):
    """The ledger file was written by a newer Learnright than this one."""

    code = "ledger_too_new"


class PeriodError(TerminalError):
    """A period string is not YYYY-MM, or the period cannot be closed yet."""

    code = "invalid_period"


class CloseMemoryError(Transient, LedgerError):
    """A close ran out of the storage engine's memory under its limit, and again under the engine's
    default (a share of the machine's memory); nothing of it was stored. A machine with more memory
    lets it through; the message names the period and both limits."""

    code = "close_out_of_memory"


class FileNameClashError(TerminalError):
    """Two files of one output would get the same name (or names that differ only in case); nothing was written."""

    code = "file_name_clash"


class FutureEventError(ValidationError):
    """``occurred_at`` lies further after the event was reported than usage can (``consumer.max_future_s``).

    The ledger compares with the Kafka record's timestamp, the SDK with its clock.
    """

    code = "occurred_in_future"


class AttributionLimitError(ValidationError):
    """An answer names more sources than one event may (``consumer.max_attributions``)."""

    code = "too_many_attributions"
