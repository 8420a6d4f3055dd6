"""Online recalibration of the forecast from a study's own finished trials.

The shipped forecaster was fitted on other workloads; a study's completed trials say how
its forecasts turned out here. Platt scaling refits ``P(grok) = sigmoid(a * logit + b)``
on the raw logits stored at each trial's probe step against whether it grokked: two
parameters, so a dozen finished trials suffice, and the forecast's ranking is kept when
``a > 0``. For :class:`~grokforecast.HjorthPruner` all inputs live in the study's storage,
so every worker computes the same map; the Ray scheduler keeps them with its own state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from grokforecast.pruning.decision import GROKKED_ATTR, PROBE_ATTR


@dataclass(frozen=True)
class Calibration:
    """``p = sigmoid(slope * logit + intercept)``, fitted on ``trials`` trials."""

    slope: float = 1.0
    intercept: float = 0.0
    trials: int = 0

    def probability(self, logit: float) -> float:
        z = self.slope * logit + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


GrokLabel = Callable[[FrozenTrial], "bool | None"]


def grok_label(study: optuna.Study, grok_value: float | None) -> GrokLabel:
    """Whether a finished trial grokked: its ``grokked`` user attribute, else its value
    against ``grok_value`` in the study's direction, else unknown (None)."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE

    def label(trial: FrozenTrial) -> bool | None:
        if GROKKED_ATTR in trial.user_attrs:
            return bool(trial.user_attrs[GROKKED_ATTR])
        if grok_value is None or trial.value is None:
            return None
        return trial.value >= grok_value if maximize else trial.value <= grok_value

    return label


def fit_calibration(
    trials: Sequence[FrozenTrial], label: GrokLabel, forecaster_key: str, min_trials: int
) -> Calibration:
    """Platt-scale the stored logits of completed, probed trials; identity until enough."""
    logits, grokked = [], []
    for trial in trials:
        probe = trial.system_attrs.get(PROBE_ATTR)
        outcome = label(trial) if trial.state == TrialState.COMPLETE else None
        if probe is None or outcome is None or probe.get("forecaster") != forecaster_key:
            continue
        logits.append(probe["logit"])
        grokked.append(outcome)
    return platt_scaling(logits, grokked, min_trials)


def platt_scaling(logits: Sequence[float], grokked: Sequence[bool], min_trials: int) -> Calibration:
    """Fit ``P(grok) = sigmoid(a * logit + b)`` to trials' forecast logits and outcomes;
    the identity until ``min_trials`` of them, with both outcomes, exist."""
    from sklearn.linear_model import LogisticRegression

    labels = [int(g) for g in grokked]
    if len(labels) < min_trials or len(set(labels)) < 2:
        return Calibration(trials=0)
    model = LogisticRegression(C=1.0).fit(np.asarray(logits, dtype=float).reshape(-1, 1), labels)
    return Calibration(float(model.coef_[0, 0]), float(model.intercept_[0]), len(labels))
