"""What Optuna sees of a sweep trial while it trains: the objective's series, at a stride.

A trial's intermediate values are what optuna-dashboard plots beside the objective, and
what Optuna's own pruners compare; in the objective's units (validation accuracy for an
accuracy objective, validation loss for a loss), a pruned trial's last value sits on the
same axis as a completed trial's result. The dense curves, the training loss among them,
live in the curve tables (:mod:`grokforecast.sweep.storage`) and feed the forecast. Optuna
gets the first evaluation of every ``report_every`` steps (each report is a storage write,
1-20 ms), the first at or after the probe step and each later rung (a pruned trial's last
value is the one it was judged on) and the last one of the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def objective_series(objective: str) -> str:
    """The evaluated curve an objective (``final_val_acc``, ``best_val_acc``,
    ``final_val_loss``) is measured in."""
    return "val_loss" if objective.endswith("val_loss") else "val_acc"


def is_reported(step: int, previous: int | None, every: int, judged_at: Sequence[int]) -> bool:
    """Whether the evaluation at ``step`` (the one before it at ``previous``, None for the
    first) is shown to Optuna: the first evaluation of each stretch of ``every`` steps, and
    the first at or after each step in ``judged_at`` (the probe and the later rungs)."""
    if previous is None:
        return True
    return step // every > previous // every or any(previous < judged <= step for judged in judged_at)


def reported_points(
    steps: Sequence[int],
    values: Sequence[float],
    start: int,
    every: int,
    judged_at: Sequence[int],
    last: bool,
) -> Iterator[tuple[int, float]]:
    """The evaluations from index ``start`` on that :func:`is_reported` selects, and the
    newest one too when ``last`` (the run has ended)."""
    for i in range(start, len(steps)):
        previous = int(steps[i - 1]) if i > 0 else None
        if is_reported(int(steps[i]), previous, every, judged_at) or (last and i == len(steps) - 1):
            yield int(steps[i]), float(values[i])
