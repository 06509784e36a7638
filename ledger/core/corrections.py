"""Corrections: reversing entries, never edits.

A VOID reverses every entry of the original event (negated quantity and amount, same
license, rate and period, ``reverses_entry_key`` naming the entry). A REPLACE reverses
them and books the replacement quantities, priced by the license that was in force at
the original's ``occurred_at``. The reversals keep the original's period, so a
correction of a closed month lands in the next statement as a prior-period adjustment.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.errors import PricingError
from ledger.core.licenses import LicenseBook
from ledger.core.money import wide_precision
from ledger.core.pricing import INFERENCE, TRAINING, Accrual, price_inference, price_training
from ledger.core.usage import InferenceUsage, TrainingUsage, UsageCorrection


class CorrectionError(PricingError):
    """A correction that cannot apply to its original (wrong kind, already corrected)."""

    code = "correction_invalid"


def reversal_of(entry_key: str, original: Accrual, correction: UsageCorrection, line: int) -> Accrual:
    return replace(
        original, event_id=correction.event_id, line=line, quantity=-original.quantity,
        amount=-original.amount, reverses_entry_key=entry_key, stream="", position=0,
    )


@wide_precision
def apply_correction(
    correction: UsageCorrection, booked: tuple[tuple[str, Accrual], ...], book: LicenseBook
) -> tuple[Accrual, ...]:
    """The entries that carry out ``correction`` of the event whose entries are ``booked`` (key, entry).

    Raises:
        CorrectionError: the original has no priced entries, is itself a correction, or
            the replacement does not fit its kind (units for training, attributions for inference).
        PricingError: the replacement cannot be priced.
    """
    if not booked:
        raise CorrectionError(
            f"correction {correction.event_id}: event {correction.corrects_event_id} has no priced entries to correct"
        )
    if any(accrual.reverses_entry_key is not None for _, accrual in booked):
        raise CorrectionError(
            f"correction {correction.event_id}: {correction.corrects_event_id} is itself a correction;"
            " correct the original event instead (an event is corrected at most once)"
        )
    reversals = [reversal_of(key, accrual, correction, line) for line, (key, accrual) in enumerate(booked)]
    if correction.action == "VOID":
        return tuple(reversals)
    first = booked[0][1]
    if first.kind == TRAINING:
        if correction.replacement_units is None:
            raise CorrectionError(
                f"correction {correction.event_id}: {correction.corrects_event_id} is a training event;"
                " REPLACE needs replacement_units"
            )
        replacement = price_training(TrainingUsage(
            event_id=correction.event_id, platform_id=first.platform_id, model_id=first.model_id, run_id="",
            source_id=first.source_id, units=correction.replacement_units, unit=first.unit,
            occurred_at=first.occurred_at,
        ), book)
    elif first.kind == INFERENCE:
        if correction.replacement_attributions is None:
            raise CorrectionError(
                f"correction {correction.event_id}: {correction.corrects_event_id} is an inference event;"
                " REPLACE needs replacement_attributions"
            )
        replacement = price_inference(InferenceUsage(
            event_id=correction.event_id, platform_id=first.platform_id, model_id=first.model_id, request_id="",
            occurred_at=first.occurred_at, attributions=correction.replacement_attributions,
        ), book)
    else:
        raise CorrectionError(f"correction {correction.event_id}: entries of kind {first.kind!r} cannot be replaced")
    offset = len(reversals)
    return tuple(reversals) + tuple(replace(a, line=offset + a.line) for a in replacement)
