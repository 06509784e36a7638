from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from ground.errors import ValidationError
from ledger.core.money import minor_units, money, round_to_minor, to_accrual_scale


def test_money_refuses_floats_and_names_the_field():
    with pytest.raises(ValidationError, match=r"revenue must be an exact decimal .* \(got 0\.1\)"):
        money(0.1, "revenue")


def test_money_accepts_exact_inputs():
    assert money("0.10") == Decimal("0.10")
    assert money(3) == Decimal(3)
    with pytest.raises(ValidationError, match="finite"):
        money("NaN")


@pytest.mark.parametrize("currency, digits", [("JPY", 0), ("USD", 2), ("BHD", 3), ("EUR", 2)])
def test_minor_units(currency, digits):
    assert minor_units(currency) == digits


def test_unknown_currency_is_named():
    with pytest.raises(ValidationError, match=r"currency is not an ISO 4217 currency code \(got 'XYZ'\)"):
        minor_units("XYZ")


def test_rounding_is_half_even():
    assert round_to_minor(Decimal("0.125"), "USD") == Decimal("0.12")
    assert round_to_minor(Decimal("0.135"), "USD") == Decimal("0.14")
    assert round_to_minor(Decimal("2.5"), "JPY") == Decimal("2")
    assert round_to_minor(Decimal("1.0005"), "BHD") == Decimal("1.000")


def test_accrual_scale_refuses_to_drop_digits():
    assert to_accrual_scale(Decimal("1.5")) == Decimal("1.500000000000")
    with pytest.raises(ValidationError, match="more than 12 decimal places"):
        to_accrual_scale(Decimal("1.0000000000001"))


@given(st.decimals(min_value=-10**9, max_value=10**9, places=12, allow_nan=False),
       st.sampled_from(["JPY", "USD", "BHD"]))
def test_rounding_residual_is_under_half_a_minor_unit(amount, currency):
    rounded = round_to_minor(amount, currency)
    assert abs(amount - rounded) <= Decimal(1).scaleb(-minor_units(currency)) / 2
    assert rounded + (amount - rounded) == amount


def test_payable_amounts_show_exactly_the_minor_unit():
    from ledger.core.money import at_minor_unit

    assert str(at_minor_unit(Decimal("8134.310000000000"), "EUR")) == "8134.31"
    assert str(at_minor_unit(Decimal("35.000000000000"), "JPY")) == "35"
    with pytest.raises(ValidationError, match="not a whole number of USD minor units"):
        at_minor_unit(Decimal("1.005"), "USD")


def test_rounding_holds_for_amounts_beyond_28_digits():
    assert round_to_minor(Decimal("11111111021106000001.234567891234"), "USD") == Decimal("11111111021106000001.23")
