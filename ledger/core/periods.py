"""Periods: a period is a UTC calendar month, written ``YYYY-MM``.

Pure: strings and aware datetimes in, strings and aware UTC datetimes out. This is the
only place that does month arithmetic; the close, the period terms, the scheduler and
the synthetic producer all ask it.

A period is kept as its ``YYYY-MM`` string (that is how events, ledger rows and
statements carry it). For four-digit years the strings sort in calendar order, so two
periods compare with ``<`` directly. A period starts at 00:00 UTC on its first day and
ends, exclusively, where the next one starts. Instants exist only for years 0001-9999
(Python's ``datetime``): year 0000 is not a period, and the end of ``9999-12`` raises
``ValueError``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from ledger.errors import PeriodError

_PERIOD = re.compile(r"(?!0000)(\d{4})-(0[1-9]|1[0-2])")

NOT_A_PERIOD = "must be a month as YYYY-MM"
"""The problem named when a value is not a period (also used for event fields)."""


def is_period(value: object) -> bool:
    """Whether ``value`` is a period string: four digits, a dash, a month 01 to 12."""
    return isinstance(value, str) and _PERIOD.fullmatch(value) is not None


def check_period(period: str, field: str = "period") -> str:
    """Returns ``period`` unchanged when it is a period string.

    Raises:
        PeriodError: ``period`` is not ``YYYY-MM``; the message names ``field`` and the
            value, e.g. ``period must be a month as YYYY-MM (got '2026-13')``.
    """
    if not is_period(period):
        raise PeriodError(f"{field} {NOT_A_PERIOD} (got {period!r})")
    return period


def _year_month(period: str) -> tuple[int, int]:
    year, month = check_period(period).split("-")
    return int(year), int(month)


def period_of(moment: datetime) -> str:
    """The UTC month of ``moment``: the only thing that decides which period an instant is in.

    Raises:
        PeriodError: ``moment`` is naive; its period would depend on the machine's zone.
    """
    if moment.utcoffset() is None:  # None for a naive datetime
        raise PeriodError(f"cannot take the period of a naive datetime (got {moment.isoformat()});"
                          " it must be timezone-aware (UTC)")
    utc = moment.astimezone(timezone.utc)
    return f"{utc.year:04d}-{utc.month:02d}"


def period_start(period: str) -> datetime:
    """The first instant of ``period``: 00:00 UTC on its first day (aware, UTC).

    Raises:
        PeriodError: ``period`` is not ``YYYY-MM``.
    """
    year, month = _year_month(period)
    return datetime(year, month, 1, tzinfo=timezone.utc)


def period_end(period: str) -> datetime:
    """The exclusive end of ``period``: the start of the next one, so ``start <= t < end`` is inside.

    Raises:
        PeriodError: ``period`` is not ``YYYY-MM``.
    """
    year, month = _year_month(period)
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)


def last_instant(period: str) -> datetime:
    """The last microsecond of ``period``: when period terms are dated and licenses looked up.

    Raises:
        PeriodError: ``period`` is not ``YYYY-MM``.
    """
    return period_end(period) - timedelta(microseconds=1)


def next_period(period: str) -> str:
    """The month after ``period`` (December rolls over into January of the next year).

    Raises:
        PeriodError: ``period`` is not ``YYYY-MM``.
    """
    year, month = _year_month(period)
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def previous_period(period: str) -> str:
    """The month before ``period`` (January rolls back into December of the year before).

    Raises:
        PeriodError: ``period`` is not ``YYYY-MM``.
    """
    year, month = _year_month(period)
    return f"{year - (month == 1):04d}-{(month - 2) % 12 + 1:02d}"


def periods_between(first: str, stop: str) -> tuple[str, ...]:
    """Every period from ``first`` up to but not including ``stop``, oldest first.

    Empty when ``stop`` is not after ``first``; otherwise every calendar month in
    between, none skipped and none repeated.

    Raises:
        PeriodError: ``first`` or ``stop`` is not ``YYYY-MM``.
    """
    check_period(stop, "stop")
    period = check_period(first, "first")
    periods = []
    while period < stop:
        periods.append(period)
        period = next_period(period)
    return tuple(periods)
