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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from grokforecast.pruning.decision import GROKKED_AT_PROBE, GROKKED_ATTR, PROBE_ATTR, Decision


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


class Outcome(NamedTuple):
    """What one forecast trial that ran to its end teaches: its forecaster, the logit at
    its probe step, and whether it grokked."""

    forecaster: str
    logit: float
    grokked: bool


def teaches(probe: Mapping[str, Any]) -> bool:
    """Whether a probed trial that ran to its end says how forecasts turn out here: the
    forecast let it run on (kept or explored), and it had not grokked already by its probe
    (then it ran on whatever the forecast said, and its logit forecast nothing)."""
    return probe["decision"] != Decision.PRUNE.value and not probe.get(GROKKED_AT_PROBE, False)


def probed_outcomes(trials: Iterable[FrozenTrial], label: GrokLabel) -> dict[int, Outcome]:
    """The outcomes of the completed, probed trials that teach (:func:`teaches`) and whose
    label is known, by trial number."""
    outcomes = {}
    for trial in trials:
        probe = trial.system_attrs.get(PROBE_ATTR)
        grokked = label(trial) if trial.state == TrialState.COMPLETE else None
        if probe is not None and grokked is not None and teaches(probe):
            outcomes[trial.number] = Outcome(probe["forecaster"], float(probe["logit"]), bool(grokked))
    return outcomes


def fit_calibration(
    trials: Sequence[FrozenTrial], label: GrokLabel, forecaster_key: str, min_trials: int
) -> Calibration:
    """Platt-scale the stored logits of completed, probed trials; identity until enough."""
    return calibration_for(probed_outcomes(trials, label).values(), forecaster_key, min_trials)


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
