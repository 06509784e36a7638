"""Synthetic usage for demos and tests: a month of training and inference from platforms.

Deterministic for a seed, so a demo run and a test can both be reproduced.
"""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from typing import Iterator, Mapping, Sequence

from ledger.core.periods import period_end, period_start
from ledger.core.usage import Attribution, InferenceUsage, TrainingUsage


def month_usage(
    *,
    period: str,
    platforms: Sequence[str],
    training_units: Mapping[str, str],
    inference_sources: Sequence[str],
    events: int,
    seed: int = 7,
    training_share: float = 0.2,
) -> Iterator[TrainingUsage | InferenceUsage]:
    """Yields ``events`` events spread over ``period``, about ``training_share`` training.

    Args:
        training_units: source id -> the unit its license prices training in.
        inference_sources: sources an answer may draw on (1 to 3 per answer).
    """
    rng = random.Random(seed)
    start, end = period_start(period), period_end(period)
    span = int((end - start).total_seconds() * 1_000_000)
    models = {p: [f"{p}-model-{i}" for i in range(1, 3)] for p in platforms}
    training_sources = sorted(training_units)
    for n in range(events):
        platform = platforms[n % len(platforms)]
        model = rng.choice(models[platform])
        occurred_at = start + timedelta(microseconds=rng.randrange(span))
        event_id = f"{platform}-{seed}-{n:08d}"
        if rng.random() < training_share:
            source = rng.choice(training_sources)
            unit = training_units[source]
            units = rng.randint(1, 500) if unit == "items" else rng.randint(10_000, 5_000_000)
            yield TrainingUsage(
                event_id=event_id, platform_id=platform, model_id=model, run_id=f"{model}-run-{n % 5}",
                source_id=source, units=units, unit=unit, occurred_at=occurred_at,
            )
        else:
            chosen = rng.sample(list(inference_sources), rng.randint(1, min(3, len(inference_sources))))
            # Weights in thousandths summing to at most 1.
            remaining = 1000
            attributions = []
            for source in chosen:
                share = rng.randint(1, max(1, remaining // 2))
                remaining -= share
                attributions.append(Attribution(source_id=source, weight=Decimal(share).scaleb(-3)))
            yield InferenceUsage(
                event_id=event_id, platform_id=platform, model_id=model, request_id=f"req-{n}",
                occurred_at=occurred_at, attributions=tuple(attributions), output_units=rng.randint(20, 800),
            )
