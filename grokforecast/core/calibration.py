"""Online recalibration of the forecast from a study's own finished trials.

The shipped forecaster was fitted on other workloads; a study's completed trials say how
its forecasts turned out here. Platt scaling refits ``P(grok) = sigmoid(a * logit + b)``
on the raw logits stored at each trial's probe step against whether it grokked: two
parameters, so a dozen finished trials suffice, and the forecast's ranking is kept when
``a > 0``. Where the outcomes come from is the backend's business (the study's trials for
the Optuna pruner, finished Tune trials for the scheduler); the fit is this one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """``p = sigmoid(slope * logit + intercept)``, fitted on ``trials`` trials."""

    slope: float = 1.0
    intercept: float = 0.0
    trials: int = 0

    def probability(self, logit: float) -> float:
        z = self.slope * logit + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


class Outcome(NamedTuple):
    """What one forecast trial that ran to its end teaches: its forecaster, the logit at
    its probe step, and whether it grokked."""

    forecaster: str
    logit: float
    grokked: bool


def calibration_for(outcomes: Iterable[Outcome], forecaster_key: str, min_trials: int) -> Calibration:
    """Platt scaling of the forecasts of ``forecaster_key`` among ``outcomes``."""
    taught = [o for o in outcomes if o.forecaster == forecaster_key]
    return platt_scaling([o.logit for o in taught], [o.grokked for o in taught], min_trials)


def platt_scaling(logits: Sequence[float], grokked: Sequence[bool], min_trials: int) -> Calibration:
    """Fit ``P(grok) = sigmoid(a * logit + b)`` to trials' forecast logits and outcomes;
    the identity until ``min_trials`` of them, with both outcomes, exist."""
    from sklearn.linear_model import LogisticRegression

    labels = [int(g) for g in grokked]
    if len(labels) < min_trials or len(set(labels)) < 2:
        return Calibration(trials=0)
    model = LogisticRegression(C=1.0).fit(np.asarray(logits, dtype=float).reshape(-1, 1), labels)
    return Calibration(float(model.coef_[0, 0]), float(model.intercept_[0]), len(labels))
