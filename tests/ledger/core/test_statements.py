from decimal import Decimal

from hypothesis import given, strategies as st

from ledger.core.statements import settle


def test_residual_is_carried():
    assert settle(Decimal("10.005"), "USD", Decimal(0)) == (Decimal("10.00"), Decimal("0.005"))
    assert settle(Decimal("99.5"), "JPY", Decimal(0)) == (Decimal("100"), Decimal("-0.5"))


def test_under_minimum_or_negative_is_carried_whole():
    assert settle(Decimal("9.99"), "USD", Decimal("10")) == (Decimal(0), Decimal("9.99"))
    assert settle(Decimal("-3.2"), "USD", Decimal(0)) == (Decimal(0), Decimal("-3.2"))


@given(
    st.lists(st.decimals(min_value=-50, max_value=500, places=12, allow_nan=False), min_size=1, max_size=24),
    st.sampled_from(["JPY", "USD", "BHD"]),
    st.decimals(min_value=0, max_value=100, places=2, allow_nan=False),
)
def test_payouts_plus_carry_equal_accruals_over_any_number_of_periods(monthly, currency, minimum):
    carry, paid = Decimal(0), Decimal(0)
    for accrued in monthly:
        payable, carry = settle(accrued + carry, currency, minimum)
        assert payable >= 0
        paid += payable
    assert paid + carry == sum(monthly)
