"""How well a study can forecast *when* its kept trials will grok, corpus by corpus.

A grok-time budget would stop a kept trial that is well past its forecast grok step
without having grokked. That is only worth building if the forecast is sharp, so this
module measures it as a study would meet it: the grokking runs of a corpus arrive in a
random order, and each is forecast from the grokking runs that finished before it (once
:data:`MIN_GROKKED` have), never from itself or later ones. Two forecasts:

- ``power law``: Notsawo et al.'s ``t4(r) = a * r**-gamma + b`` in the data fraction
  (:func:`~grokforecast.forecast.grok_time.fit_grok_time`);
- ``log-linear``: ``log t4`` linear in ``log lr``, ``log weight_decay`` and ``log r``,
  ridge-regularized (:data:`RIDGE`), which also gives a spread: the share of runs that
  grokked below its upper bound (:data:`UPPER_Z` residual deviations) is what a budget
  set there would keep.

Scored by the mean and median absolute percentage error of the forecast grok step.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grokforecast.forecast.fitting import usable_records
from grokforecast.forecast.grok_time import fit_grok_time
from grokforecast.records import RunRecord

#: Grokking runs a study must have finished before it forecasts the next one's grok step.
MIN_GROKKED = 8
#: Ridge penalty of the log-linear forecast's slopes (not its intercept).
RIDGE = 1.0
#: Residual standard deviations above the log-linear forecast where a budget would sit.
UPPER_Z = 2.0


@dataclass(frozen=True)
class GrokTimeScore:
    """One corpus: its grokking runs, and each forecast's errors over the trial orders."""

    corpus: str
    grokked: int
    runs: int
    median_t4_share: float
    forecasts: int
    law_mape: float | None
    law_median_ape: float | None
    loglinear_mape: float
    loglinear_median_ape: float
    kept_below_upper: float


def _design(records: Sequence[RunRecord]) -> np.ndarray:
    return np.array(
        [
            [
                1.0,
                math.log(r.config["lr"]),
                math.log(r.config["weight_decay"]),
                math.log(r.config["data_fraction"]),
            ]
            for r in records
        ]
    )


def _loglinear(design: np.ndarray, log_t4: np.ndarray) -> tuple[np.ndarray, float]:
    """The ridge fit of ``log t4`` on the design, and its residual standard deviation."""
    penalty = np.diag([0.0, *[RIDGE] * (design.shape[1] - 1)])
    coefficients = np.linalg.solve(design.T @ design + penalty, design.T @ log_t4)
    residuals = log_t4 - design @ coefficients
    spread = math.sqrt(float(residuals @ residuals) / max(len(log_t4) - design.shape[1], 1))
    return coefficients, spread


def score_corpus(corpus: str, records: Sequence[RunRecord], orders: int = 5) -> GrokTimeScore:
    """Forecast every grokking run of ``records`` from those before it, in ``orders`` orders."""
    usable = usable_records(records)
    grokking = [r for r in usable if r.grokked]
    t4 = np.array([r.times.t4 for r in grokking], dtype=float)
    design = _design(grokking)
    fractions = np.array([r.config["data_fraction"] for r in grokking])
    law_errors: list[float] = []
    loglinear_errors: list[float] = []
    below: list[bool] = []
    for order in range(orders):
        sequence = list(range(len(grokking)))
        random.Random(order).shuffle(sequence)
        for k in range(MIN_GROKKED, len(sequence)):
            seen, run = sequence[:k], sequence[k]
            coefficients, spread = _loglinear(design[seen], np.log(t4[seen]))
            forecast = float(design[run] @ coefficients)
            loglinear_errors.append(abs(math.exp(forecast) - t4[run]) / t4[run])
            below.append(math.log(t4[run]) <= forecast + UPPER_Z * spread)
            try:
                law = fit_grok_time(fractions[seen], t4[seen])
            except (ValueError, RuntimeError):  # too few distinct fractions yet, or no fit
                continue
            law_errors.append(abs(float(law.predict(fractions[run])) - t4[run]) / t4[run])
    full = int(grokking[0].config["steps"]) if grokking else 1
    return GrokTimeScore(
        corpus=corpus,
        grokked=len(grokking),
        runs=len(usable),
        median_t4_share=float(np.median(t4)) / full if len(t4) else math.nan,
        forecasts=len(loglinear_errors),
        law_mape=float(np.mean(law_errors)) if law_errors else None,
        law_median_ape=float(np.median(law_errors)) if law_errors else None,
        loglinear_mape=float(np.mean(loglinear_errors)) if loglinear_errors else math.nan,
        loglinear_median_ape=float(np.median(loglinear_errors)) if loglinear_errors else math.nan,
        kept_below_upper=float(np.mean(below)) if below else math.nan,
    )


def markdown_table(scores: Sequence[GrokTimeScore]) -> str:
    """One row per corpus: errors in per cent of the true grok step."""

    def percent(value: float | None) -> str:
        return "-" if value is None or math.isnan(value) else f"{100 * value:.0f} %"

    lines = [
        "| corpus | grokked / runs | median grok step / budget | forecasts | power law in r: mean / median "
        f"error | log-linear in lr, wd, r: mean / median error | grokked below the {UPPER_Z:g}-sigma bound |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in scores:
        lines.append(
            f"| {s.corpus} | {s.grokked} / {s.runs} | {s.median_t4_share:.2f} | {s.forecasts} "
            f"| {percent(s.law_mape)} / {percent(s.law_median_ape)} "
            f"| {percent(s.loglinear_mape)} / {percent(s.loglinear_median_ape)} "
            f"| {percent(s.kept_below_upper)} |"
        )
    return "\n".join(lines)
