"""Splits: parts sum exactly to the whole, each within one quantum of its share, deterministically."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from ground.errors import ValidationError
from ledger.core.allocation import allocate
from ledger.core.money import minor_quantum

CURRENCIES = st.sampled_from(["JPY", "USD", "BHD"])
WEIGHTS = st.dictionaries(
    st.text(alphabet="abcdefgh", min_size=1, max_size=3),
    st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False),
    min_size=1, max_size=8,
).filter(lambda w: sum(w.values()) > 0)


@st.composite
def totals(draw, currency):
    units = draw(st.integers(min_value=-10**9, max_value=10**9))
    return minor_quantum(currency) * units


@given(st.data(), CURRENCIES, WEIGHTS)
def test_parts_sum_to_the_whole_in_minor_units(data, currency, weights):
    total = data.draw(totals(currency))
    parts = allocate(total, weights, currency)
    quantum = minor_quantum(currency)
    assert sum(parts.values()) == total
    assert list(parts) == sorted(weights)
    whole = sum(weights.values())
    for key, part in parts.items():
        assert part % quantum == 0
        exact = Fraction(total) * Fraction(weights[key]) / Fraction(whole)
        assert abs(Fraction(part) - exact) < Fraction(quantum)
        if weights[key] == 0:
            assert part == 0


@given(WEIGHTS, st.integers(min_value=0, max_value=10**15))
def test_accrual_scale_split_is_exact_and_independent_of_key_order(weights, units):
    total = Decimal(units).scaleb(-12)
    forward = allocate(total, weights, Decimal("1e-12"))
    backward = allocate(total, dict(reversed(list(weights.items()))), Decimal("1e-12"))
    assert forward == backward
    assert sum(forward.values()) == total


def test_ties_go_to_the_first_keys_in_order():
    # 100 yen among three equal holders: 33.33 each, the spare yen to the first key.
    assert allocate(Decimal(100), {"c": 1, "a": 1, "b": 1}, "JPY") == {
        "a": Decimal(34), "b": Decimal(33), "c": Decimal(33)}
    # 0.010 BHD in thirds: 0.004 + 0.003 + 0.003, sign kept for a negative total.
    assert allocate(Decimal("-0.010"), {"x": 1, "y": 1, "z": 1}, "BHD") == {
        "x": Decimal("-0.004"), "y": Decimal("-0.003"), "z": Decimal("-0.003")}


def test_largest_remainder_wins_the_spare_unit():
    # 10 cents by 1:1:1:3 -> exact 1.67, 1.67, 1.67, 5; the spare cents to the largest remainders.
    parts = allocate(Decimal("0.10"), {"a": 1, "b": 1, "c": 1, "d": 3}, "USD")
    assert parts == {"a": Decimal("0.02"), "b": Decimal("0.02"), "c": Decimal("0.01"), "d": Decimal("0.05")}


@pytest.mark.parametrize("total, weights, message", [
    (Decimal("1.005"), {"a": 1}, "total is not a whole number of the quantum 0.01"),
    (Decimal("1"), {"a": 0.5}, "never a float"),
    (Decimal("1"), {"a": Decimal(-1), "b": Decimal(2)}, "must be >= 0"),
    (Decimal("1"), {"a": 0}, "at least one weight > 0"),
])
def test_bad_splits_say_what_is_wrong(total, weights, message):
    with pytest.raises(ValidationError, match=message):
        allocate(total, weights, "USD")
