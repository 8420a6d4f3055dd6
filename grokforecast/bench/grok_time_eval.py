"""How well a study can forecast *when* its kept trials will grok, corpus by corpus.

A grok-time budget would stop a kept trial that is well past its forecast grok step
without having grokked. That is only worth building if the forecast is sharp, so this
module measures it as a study would meet it: the grokking runs of a corpus arrive in a
random order, and each is forecast from the grokking runs that finished before it (once
:data:`MIN_GROKKED` have), never from itself or later ones. Three forecasts:

- ``power law``: Notsawo et al.'s ``t4(r) = a * r**-gamma + b`` in the data fraction
  (:func:`~grokforecast.forecast.grok_time.fit_grok_time`);
- ``log-linear``: ``log t4`` linear in ``log lr``, ``log weight_decay`` and ``log r``,
  ridge-regularized (:data:`RIDGE`), which also gives a spread: the share of runs that
  grokked below its upper bound (:data:`UPPER_Z` residual deviations) is what a budget
  set there would keep;
- ``first passage``: Omnigrok's picture, in which a run generalizes once weight decay has
  shrunk its weights to a norm set by the task. Each earlier grokker says how far (in
  log weight norm) its weights fell from the probe (:data:`PROBE_FRACTION` of the budget)
  to its grok step; the run's own log weight norm, extrapolated from its slope over the
  second half of its probe window, is forecast to grok when it has fallen the median of
  those distances. Only a run that had not grokked by its probe is forecast (the others
  need none); a run whose weights are not shrinking at its probe has no first passage and
  takes the earlier grokkers' median grok step.

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
#: Where the first-passage forecast reads a run's weight norm: the forecaster's probe.
PROBE_FRACTION = 0.1


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
    #: First-passage forecasts made (grokkers past their probe), and their errors.
    passage_forecasts: int
    passage_mape: float | None
    passage_median_ape: float | None


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


def _log_norm_at(record: RunRecord, step: float) -> float:
    curves = record.curves
    return float(np.interp(step, curves.eval_steps, np.log(curves.weight_norm)))


def _probe_norm(record: RunRecord, probe: float) -> tuple[float, float]:
    """The run's log weight norm at ``probe``, and its slope per step over the second half
    of the probe window (least squares; NaN with fewer than two evaluations there)."""
    steps = np.asarray(record.curves.eval_steps, dtype=float)
    window = (steps >= probe / 2) & (steps <= probe)
    if window.sum() < 2:
        return _log_norm_at(record, probe), math.nan
    log_norms = np.log(np.asarray(record.curves.weight_norm, dtype=float)[window])
    return _log_norm_at(record, probe), float(np.polyfit(steps[window], log_norms, 1)[0])


def _first_passage(fall: float, slope: float, probe: float, fallback: float) -> float:
    """The step the log weight norm, falling ``slope`` per step from the probe, has fallen
    ``fall`` (< 0); ``fallback`` where it is not falling."""
    if not (math.isfinite(slope) and slope < 0 and fall < 0):
        return fallback
    return probe + fall / slope


def score_corpus(corpus: str, records: Sequence[RunRecord], orders: int = 5) -> GrokTimeScore:
    """Forecast every grokking run of ``records`` from those before it, in ``orders`` orders."""
    usable = usable_records(records)
    grokking = [r for r in usable if r.grokked]
    t4 = np.array([r.times.t4 for r in grokking], dtype=float)
    design = _design(grokking)
    fractions = np.array([r.config["data_fraction"] for r in grokking])
    probe = PROBE_FRACTION * int(grokking[0].config["steps"]) if grokking else 0.0
    at_probe = [_probe_norm(r, probe) for r in grokking]
    # How far each grokker's log weight norm fell from its probe to its grok step.
    falls = np.array(
        [_log_norm_at(r, r.times.t4) - norm for r, (norm, _) in zip(grokking, at_probe, strict=True)]
    )
    law_errors: list[float] = []
    loglinear_errors: list[float] = []
    passage_errors: list[float] = []
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
            if t4[run] > probe:
                passage = _first_passage(
                    float(np.median(falls[seen])), at_probe[run][1], probe, float(np.median(t4[seen]))
                )
                passage_errors.append(abs(passage - t4[run]) / t4[run])
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
        passage_forecasts=len(passage_errors),
        passage_mape=float(np.mean(passage_errors)) if passage_errors else None,
        passage_median_ape=float(np.median(passage_errors)) if passage_errors else None,
    )


def markdown_table(scores: Sequence[GrokTimeScore]) -> str:
    """One row per corpus: errors in per cent of the true grok step."""

    def percent(value: float | None) -> str:
        return "-" if value is None or math.isnan(value) else f"{100 * value:.0f} %"

    lines = [
        "| corpus | grokked / runs | median grok step / budget | forecasts | power law in r: mean / median "
        f"error | log-linear in lr, wd, r: mean / median error | grokked below the {UPPER_Z:g}-sigma bound "
        "| weight-norm first passage from the probe: forecasts, mean / median error |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in scores:
        lines.append(
            f"| {s.corpus} | {s.grokked} / {s.runs} | {s.median_t4_share:.2f} | {s.forecasts} "
            f"| {percent(s.law_mape)} / {percent(s.law_median_ape)} "
            f"| {percent(s.loglinear_mape)} / {percent(s.loglinear_median_ape)} "
            f"| {percent(s.kept_below_upper)} "
            f"| {s.passage_forecasts}: {percent(s.passage_mape)} / {percent(s.passage_median_ape)} |"
        )
    return "\n".join(lines)
