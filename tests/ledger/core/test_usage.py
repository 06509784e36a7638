"""The bounds on plausible usage (ledger.core.usage.UsageLimits): pure, no broker, no clock.

``reported_ms`` is when the event was reported: the ledger passes the Kafka record's
timestamp, the SDK its clock. The examples are dated around 2026-11-01T00:00:00Z.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ground.errors import ValidationError
from ledger.core.usage import (DEFAULT_LIMITS, Attribution, InferenceUsage, UsageLimits, limit_problems, parse_event,
                               validate)
from ledger.errors import AttributionLimitError, FutureEventError

REPORTED = datetime(2026, 11, 1, tzinfo=timezone.utc)
REPORTED_MS = 1_793_491_200_000  # REPORTED, as a Kafka timestamp


def answer(*sources: str, weight: str = "0.001", **changes) -> dict:
    return {"event_id": "e1", "platform_id": "orbit", "model_id": "m", "request_id": "q",
            "occurred_at": REPORTED, "output_units": None,
            "attributions": [{"source_id": s, "weight": Decimal(weight)} for s in sources], **changes}


def training(**changes) -> dict:
    return {"event_id": "t1", "platform_id": "orbit", "model_id": "m", "run_id": "r", "source_id": "src-a",
            "units": 5, "unit": "items", "occurred_at": REPORTED, **changes}


def test_reported_ms_is_the_instant_the_examples_are_dated_around():
    assert datetime.fromtimestamp(REPORTED_MS / 1000, timezone.utc) == REPORTED


@pytest.mark.parametrize("occurred_at", [REPORTED, REPORTED + timedelta(seconds=3600),
                                         datetime(1, 1, 1, tzinfo=timezone.utc)])
def test_usage_up_to_the_window_after_it_was_reported_is_accepted(occurred_at):
    # (Year 1 passes this rule; the ledger quarantines it when no license is in force then.)
    event = validate("TrainingUsage", training(occurred_at=occurred_at), reported_ms=REPORTED_MS)
    assert event.occurred_at == occurred_at


def test_one_microsecond_past_the_window_is_refused_naming_the_window_and_when_it_was_reported():
    late = REPORTED + timedelta(seconds=3600, microseconds=1)
    with pytest.raises(FutureEventError) as refused:
        validate("TrainingUsage", training(occurred_at=late), reported_ms=REPORTED_MS)
    assert refused.value.code == "occurred_in_future" and refused.value.field == "occurred_at"
    assert str(refused.value) == (
        "occurred_at is more than 3600 s after the event was reported at 2026-11-01T00:00:00.000Z; usage is"
        " reported after it happens (got '2026-11-01T01:00:00.000001+00:00')")


def test_the_year_9999_is_refused_instead_of_being_priced_into_9999_12():
    far = datetime(9999, 12, 31, 23, 59, tzinfo=timezone.utc)
    event, problems = parse_event("InferenceUsage", answer("src-a", occurred_at=far), reported_ms=REPORTED_MS)
    assert event is None and [type(p) for p in problems] == [FutureEventError]
    assert "9999-12-31T23:59:00+00:00" in str(problems[0])


def test_the_window_is_a_setting_and_zero_allows_no_future_at_all():
    limits = UsageLimits(max_future_s=0)
    assert validate("TrainingUsage", training(), limits=limits, reported_ms=REPORTED_MS)
    with pytest.raises(FutureEventError, match="more than 0 s after"):
        validate("TrainingUsage", training(occurred_at=REPORTED + timedelta(microseconds=1)), limits=limits,
                 reported_ms=REPORTED_MS)


def test_a_record_without_a_timestamp_cannot_bound_occurred_at_and_is_refused():
    with pytest.raises(ValidationError, match=r"record timestamp must be a time .* \(got -1\)") as refused:
        validate("TrainingUsage", training(), reported_ms=-1)
    assert refused.value.code == "invalid_value"


def test_without_a_reported_time_nothing_is_compared():
    assert validate("TrainingUsage", training(occurred_at=datetime(9999, 1, 1, tzinfo=timezone.utc)))


def test_every_kind_is_bounded():
    late = REPORTED + timedelta(days=1)
    records = {
        "TrainingUsage": training(occurred_at=late),
        "InferenceUsage": answer("src-a", occurred_at=late),
        "RevenueReport": {"event_id": "v", "platform_id": "orbit", "model_id": "m", "period": "2026-10",
                          "revenue": Decimal("1"), "currency": "USD", "occurred_at": late},
        "UsageCorrection": {"event_id": "c", "platform_id": "orbit", "corrects_event_id": "t1", "action": "VOID",
                            "occurred_at": late},
    }
    for kind, record in records.items():
        _, problems = parse_event(kind, record, reported_ms=REPORTED_MS)
        assert [type(p) for p in problems] == [FutureEventError], kind


def test_a_source_named_twice_in_one_answer_is_refused_naming_it_and_both_positions():
    with pytest.raises(ValidationError) as refused:
        validate("InferenceUsage", answer("src-a", "src-b", "src-a"))
    assert str(refused.value) == ("attributions[2].source_id repeats attributions[0].source_id; an answer names each"
                                  " source once (got 'src-a')")


def test_one_source_named_10_000_times_is_refused_by_the_limit_without_reading_each():
    event, problems = parse_event("InferenceUsage", answer(*["src-a"] * 10_000, weight="0.00001"))
    assert event is None and len(problems) == 1
    (problem,) = problems
    assert isinstance(problem, AttributionLimitError) and problem.code == "too_many_attributions"
    assert str(problem) == "attributions must name at most 256 sources in one answer (got '10000 sources')"


def test_with_a_limit_that_allows_them_each_repeat_is_named():
    limits = UsageLimits(max_attributions=10_000)
    _, problems = parse_event("InferenceUsage", answer(*["src-a"] * 10_000, weight="0.00001"), limits=limits)
    assert len(problems) == 9_999
    assert {p.field for p in problems[:2]} == {"attributions[1].source_id", "attributions[2].source_id"}
    assert all("repeats attributions[0].source_id" in str(p) for p in problems)


def test_the_limit_on_sources_is_inclusive_and_configurable():
    sources = [f"src-{n}" for n in range(257)]
    assert validate("InferenceUsage", answer(*sources[:256]))
    with pytest.raises(AttributionLimitError, match="at most 256 sources in one answer .got '257 sources'"):
        validate("InferenceUsage", answer(*sources))
    with pytest.raises(AttributionLimitError, match="at most 2 sources"):
        validate("InferenceUsage", answer(*sources[:3]), limits=UsageLimits(max_attributions=2))


def test_a_correction_replacing_attributions_is_held_to_the_same_rules():
    correction = {"event_id": "c", "platform_id": "orbit", "corrects_event_id": "e1", "action": "REPLACE",
                  "occurred_at": REPORTED,
                  "replacement_attributions": [{"source_id": "src-a", "weight": Decimal("0.1")}] * 2}
    with pytest.raises(ValidationError, match=r"replacement_attributions\[1\]\.source_id repeats"):
        validate("UsageCorrection", correction)
    with pytest.raises(AttributionLimitError):
        validate("UsageCorrection", correction, limits=UsageLimits(max_attributions=1))


def test_an_event_built_earlier_is_checked_again_against_the_time_it_is_sent():
    event = validate("InferenceUsage", answer("src-a", occurred_at=REPORTED + timedelta(minutes=30)),
                     reported_ms=REPORTED_MS)
    assert limit_problems(event, reported_ms=REPORTED_MS) == []
    earlier = REPORTED_MS - 3_600_000  # sent an hour before: then it lay 90 minutes ahead
    assert [type(p) for p in limit_problems(event, reported_ms=earlier)] == [FutureEventError]
    built = InferenceUsage(event_id="e", platform_id="orbit", model_id="m", request_id="q", occurred_at=REPORTED,
                           attributions=(Attribution(source_id="src-a", weight=Decimal("0.1")),) * 3)
    assert [p.field for p in limit_problems(built)] == ["attributions[1].source_id", "attributions[2].source_id"]
    assert [type(p) for p in limit_problems(built, limits=UsageLimits(max_attributions=2))] == [AttributionLimitError]


def test_the_defaults_are_an_hour_and_256_sources():
    assert (DEFAULT_LIMITS.max_future_s, DEFAULT_LIMITS.max_attributions) == (3600, 256)
