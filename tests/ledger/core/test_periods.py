"""Periods: UTC calendar months as YYYY-MM, their instants and their order."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from ledger.core.periods import (
    check_period, is_period, last_instant, next_period, period_end, period_of, period_start, periods_between,
    previous_period,
)
from ground.errors import ValidationError
from ledger.core.usage import parse_event
from ledger.errors import PeriodError

UTC = timezone.utc
# Periods that, with the few years after them, have instants (datetime covers 0001-9999).
periods = st.builds(lambda year, month: f"{year:04d}-{month:02d}",
                    st.integers(min_value=2, max_value=9995), st.integers(min_value=1, max_value=12))


@pytest.mark.parametrize("bad", ["2026-13", "2026-00", "0000-01", "2026-01\n", "2026-1", "26-01", "2026/01", "2026-01-01", " 2026-01", "", None, 202601])
def test_a_malformed_period_is_refused_naming_the_value(bad):
    assert not is_period(bad)
    with pytest.raises(PeriodError, match=rf"period must be a month as YYYY-MM \(got {re.escape(repr(bad))}\)"):
        check_period(bad)


def test_every_function_taking_a_period_refuses_a_malformed_one():
    for function in (period_start, period_end, last_instant, next_period, previous_period):
        with pytest.raises(PeriodError, match=r"\(got '2026-13'\)"):
            function("2026-13")
    with pytest.raises(PeriodError, match=r"stop must be a month as YYYY-MM \(got 'soon'\)"):
        periods_between("2026-01", "soon")


def test_the_period_of_an_instant_is_its_utc_month():
    assert period_of(datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)) == "2026-03"
    assert period_of(datetime(2026, 4, 1, tzinfo=UTC)) == "2026-04"
    # 00:30 on 1 April in UTC+02:00 is still 31 March in UTC.
    assert period_of(datetime(2026, 4, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == "2026-03"


def test_a_naive_datetime_has_no_period():
    with pytest.raises(PeriodError, match=r"naive datetime \(got 2026-04-01T00:00:00\)"):
        period_of(datetime(2026, 4, 1))


def test_instants_of_a_period_are_utc_and_cover_the_whole_month():
    assert period_start("2024-02") == datetime(2024, 2, 1, tzinfo=UTC)
    assert period_end("2024-02") == datetime(2024, 3, 1, tzinfo=UTC)
    assert last_instant("2024-02") == datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    assert period_end("2026-12") == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_start("2026-12").tzinfo is UTC


def test_next_and_previous_roll_over_the_year():
    assert next_period("2026-12") == "2027-01"
    assert previous_period("2027-01") == "2026-12"
    assert next_period("2026-04") == "2026-05"
    assert previous_period("2026-05") == "2026-04"


def test_periods_between_is_half_open_and_in_order():
    assert periods_between("2025-11", "2026-03") == ("2025-11", "2025-12", "2026-01", "2026-02")
    assert periods_between("2026-03", "2026-03") == ()
    assert periods_between("2026-04", "2026-03") == ()


@given(periods)
def test_next_then_previous_is_identity(period):
    assert previous_period(next_period(period)) == period
    assert next_period(previous_period(period)) == period


@given(periods)
def test_a_period_holds_its_start_and_last_instant_and_ends_where_the_next_starts(period):
    assert period_of(period_start(period)) == period
    assert period_of(last_instant(period)) == period
    assert period_end(period) == period_start(next_period(period))
    assert period < next_period(period)


@given(periods, st.integers(min_value=0, max_value=40))
def test_periods_between_counts_every_month_once(first, months):
    stop = first
    for _ in range(months):
        stop = next_period(stop)
    between = periods_between(first, stop)
    assert len(between) == months
    assert all(next_period(a) == b for a, b in zip(between, between[1:]))


def test_an_event_with_a_malformed_period_reports_it_as_a_field_problem():
    """Events collect field problems (ValidationError); the words match check_period's."""
    record = {"event_id": "e1", "platform_id": "orbit", "model_id": "m", "period": "2026-13", "revenue": "10",
              "currency": "USD", "occurred_at": datetime(2026, 4, 2, tzinfo=UTC)}
    event, problems = parse_event("RevenueReport", record)
    assert event is None
    assert [type(p) for p in problems] == [ValidationError]
    assert str(problems[0]) == "period must be a month as YYYY-MM (got '2026-13')"
