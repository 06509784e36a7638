"""Exact money: one constructor that refuses floats, ISO 4217 minor units, one rounding.

Amounts are :class:`decimal.Decimal` everywhere. Accruals are kept at
:data:`ACCRUAL_SCALE` decimal places; rounding to a currency's minor unit happens in
:func:`round_to_minor` only, half-even, and callers carry the residual.
"""

from __future__ import annotations

import decimal
import functools
from decimal import Decimal

from ground.errors import ValidationError

ACCRUAL_SCALE = 12
ACCRUAL_QUANTUM = Decimal(1).scaleb(-ACCRUAL_SCALE)
# The largest amount a DECIMAL(38, 12) ledger column holds: 26 integer digits.
LEDGER_LIMIT = Decimal("9" * 26 + "." + "9" * ACCRUAL_SCALE)

# A context in which any inexact result is an error rather than a silent rounding.
EXACT = decimal.Context(
    prec=60,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)

# Arithmetic on amounts (products, sums) runs in WIDE: 76 digits hold any product or
# sum of DECIMAL(38,12) values this ledger forms, so nothing rounds silently (Python's
# default context keeps 28 digits). Rounding stays explicit, in round_to_minor.
WIDE = decimal.Context(
    prec=76,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


def wide_precision(function):
    """Runs ``function`` with :data:`WIDE` as the decimal context (thread-local, restored after)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with decimal.localcontext(WIDE):
            return function(*args, **kwargs)

    return wrapper


_ZERO_DECIMAL = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMAL = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DECIMAL = "CLF UYW"
_TWO_DECIMAL = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN "
    "ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES "
    "KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK "
    "MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR "
    "SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD "
    "TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG ZWL"
)
MINOR_UNITS: dict[str, int] = {
    **{code: 2 for code in _TWO_DECIMAL.split()},
    **{code: 0 for code in _ZERO_DECIMAL.split()},
    **{code: 3 for code in _THREE_DECIMAL.split()},
    **{code: 4 for code in _FOUR_DECIMAL.split()},
}


def money(value: Decimal | int | str, field: str = "amount") -> Decimal:
    """Builds an exact amount; the only way a number becomes money.

    Raises:
        ValidationError: ``value`` is a float or bool, not a number, or not finite.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise ValidationError(field, value, "must be an exact decimal (a string or Decimal), not a float")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (int, str)):
        try:
            result = Decimal(value)
        except decimal.InvalidOperation:
            raise ValidationError(field, value, "is not a decimal number") from None
    else:
        raise ValidationError(field, value, f"must be a decimal number, not {type(value).__name__}")
    if not result.is_finite():
        raise ValidationError(field, value, "must be a finite number")
    return result


def minor_units(currency: str, field: str = "currency") -> int:
    """Digits after the decimal point of ``currency`` (JPY 0, USD 2, BHD 3).

    Raises:
        ValidationError: ``currency`` is not an ISO 4217 code.
    """
    try:
        return MINOR_UNITS[currency]
    except (KeyError, TypeError):
        raise ValidationError(field, currency, "is not an ISO 4217 currency code") from None


def check_currency(currency: str, field: str = "currency") -> str:
    minor_units(currency, field)
    return currency


def minor_quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def round_to_minor(amount: Decimal, currency: str) -> Decimal:
    """The one rounding in Learnright: half-even to ``currency``'s minor unit.

    Callers keep ``amount - round_to_minor(amount, currency)`` as the residual they carry.
    """
    return amount.quantize(minor_quantum(currency), rounding=decimal.ROUND_HALF_EVEN, context=WIDE)


def at_minor_unit(amount: Decimal, currency: str) -> Decimal:
    """An amount already rounded to ``currency``'s minor unit, shown with exactly that many digits.

    Raises:
        ValidationError: ``amount`` has digits below the minor unit (it was never rounded).
    """
    try:
        return amount.quantize(minor_quantum(currency), context=EXACT)
    except decimal.Inexact:
        raise ValidationError("amount", amount, f"is not a whole number of {currency} minor units") from None


def to_accrual_scale(value: Decimal, field: str = "amount") -> Decimal:
    """``value`` at exactly :data:`ACCRUAL_SCALE` places, refusing to drop any digit.

    Raises:
        ValidationError: ``value`` needs more than ACCRUAL_SCALE decimal places.
    """
    try:
        return value.quantize(ACCRUAL_QUANTUM, context=EXACT)
    except decimal.Inexact:
        raise ValidationError(
            field, value, f"needs more than {ACCRUAL_SCALE} decimal places to be exact"
        ) from None
