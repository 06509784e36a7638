"""Largest-remainder splits: parts that sum exactly to the whole, deterministically.

Pure. Used wherever one amount is shared among several parties (a revenue pool among
sources, a model royalty among the sources it was trained on). Each part is a whole
number of ``quantum`` (a currency's minor unit, or the accrual scale's 1e-12); the
quanta left over after flooring go one each to the parts with the largest remainders,
ties broken by the parts' keys in ascending order, so the same inputs always give the
same split.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Mapping, TypeVar

from ground.errors import ValidationError
from ledger.core.money import minor_quantum

K = TypeVar("K")


def _quantum(currency_or_quantum: str | Decimal) -> Decimal:
    if isinstance(currency_or_quantum, str):
        return minor_quantum(currency_or_quantum)
    if isinstance(currency_or_quantum, Decimal) and currency_or_quantum > 0:
        return currency_or_quantum
    raise ValidationError("quantum", currency_or_quantum, "must be a currency code or a positive Decimal")


def allocate(total: Decimal, weights: Mapping[K, Decimal | int | Fraction], currency_or_quantum: str | Decimal) -> dict[K, Decimal]:
    """Splits ``total`` into parts proportional to ``weights`` by largest remainder.

    Guarantees: the parts sum to ``total`` exactly; each part is a multiple of the
    quantum; each part differs from its exact proportional share by less than one
    quantum; a zero weight gets a zero part; the result is ordered by key and depends
    only on the inputs. A negative ``total`` is split as its absolute value, negated.

    Args:
        total: the amount to split; must be a whole number of quanta.
        weights: a non-negative weight per key (Decimal, int or Fraction, never float);
            keys must be mutually orderable (they break ties).
        currency_or_quantum: an ISO 4217 code (its minor unit is the quantum) or the
            quantum itself, e.g. ``Decimal("1e-12")``.

    Raises:
        ValidationError: a float or negative weight, all weights zero, or a total that
            is not a whole number of quanta.
    """
    quantum = _quantum(currency_or_quantum)
    if not isinstance(total, Decimal) or not total.is_finite():
        raise ValidationError("total", total, "must be a finite Decimal")
    units_exact = Fraction(total) / Fraction(quantum)
    if units_exact.denominator != 1:
        raise ValidationError("total", total, f"is not a whole number of the quantum {quantum}")
    sign = -1 if units_exact < 0 else 1
    units = abs(units_exact.numerator)
    keys = sorted(weights)
    exact: dict[K, Fraction] = {}
    for key in keys:
        weight = weights[key]
        if isinstance(weight, (bool, float)) or not isinstance(weight, (Decimal, int, Fraction)):
            raise ValidationError(f"weights[{key!r}]", weight, "must be a Decimal, int or Fraction, never a float")
        if weight < 0:
            raise ValidationError(f"weights[{key!r}]", weight, "must be >= 0")
        exact[key] = Fraction(weight)
    whole = sum(exact.values(), Fraction(0))
    if whole == 0:
        raise ValidationError("weights", dict(weights), "must have at least one weight > 0 to split among")
    shares = {key: units * w / whole for key, w in exact.items()}
    floors = {key: share.numerator // share.denominator for key, share in shares.items()}
    left = units - sum(floors.values())
    # Largest remainder first; equal remainders go in key order (sorted is stable).
    by_remainder = sorted(keys, key=lambda k: shares[k] - floors[k], reverse=True)
    for key in by_remainder[:left]:
        floors[key] += 1
    return {key: (quantum * (sign * floors[key])) + Decimal(0) for key in keys}
