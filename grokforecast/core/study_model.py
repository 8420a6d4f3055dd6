"""The study model: the shipped forecast, updated by the study's own finished trials.

The shipped forecaster was fitted on other model families; a study's trials that ran to
their end say how its forecasts turn out on this one. The study model is a Bayesian
logistic regression whose prior is the shipped model:

    logit' = scale * logit + shift + corrections . z

where ``logit`` is the shipped forecaster's and ``z`` the standardized features it read.
The prior puts ``scale`` at 1, ``shift`` at 0 and every correction at 0 (the shipped
model unchanged), with widths :data:`PRIOR_SCALE`, :data:`PRIOR_SHIFT` and
:data:`PRIOR_CORRECTION`; the fit is the posterior mode (a few Newton steps). With a
handful of outcomes it mostly moves ``shift`` and ``scale`` (Platt scaling, pulled
towards the shipped scale); as outcomes accumulate, it also re-weights the features
that mislead on this family. Where the outcomes come from is the backend's business (the
study's trials for the Optuna pruner, finished Tune trials for the scheduler); the fit
is this one, so every worker that reads the same trials computes the same model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

#: Prior standard deviation of the scale on the shipped logit (centred on 1).
PRIOR_SCALE = 1.0
#: Prior standard deviation of the shift of the logit (centred on 0): the study's base
#: rate of grokking may differ from the corpus's by a lot, so this one is wide.
PRIOR_SHIFT = 3.0
#: Prior standard deviation of each feature's correction (centred on 0), per standard
#: deviation of the feature in the shipped corpus.
PRIOR_CORRECTION = 0.5
_NEWTON_STEPS = 50


class Outcome(NamedTuple):
    """What one forecast trial that ran to its end teaches: its forecaster, the logit and
    the standardized features at its probe step, and whether it grokked."""

    forecaster: str
    logit: float
    grokked: bool
    #: The standardized features the forecaster read (empty for probes stored before
    #: they were kept: such an outcome updates only the scale and the shift).
    standardized: tuple[float, ...] = ()


@dataclass(frozen=True)
class StudyModel:
    """``p = sigmoid(scale * logit + shift + corrections . z)``, fitted on ``trials`` trials.

    The default is the shipped model unchanged (no trials).

    Example:

        >>> model = fit_study_model([0.5, -1.0, 2.0, -2.0], [(0.1,), (0.0,), (1.0,), (-1.0,)],
        ...                         [True, False, True, False], min_trials=4)
        >>> model.trials, model.scale > 1.0, 0.5 < model.probability(2.0, (1.0,)) <= 1.0
        (4, True, True)
    """

    scale: float = 1.0
    shift: float = 0.0
    corrections: tuple[float, ...] = ()
    trials: int = 0

    def logit(self, logit: float, standardized: Sequence[float] = ()) -> float:
        corrected = self.scale * logit + self.shift
        if self.corrections and len(standardized) == len(self.corrections):
            corrected += float(np.dot(self.corrections, standardized))
        return corrected

    def probability(self, logit: float, standardized: Sequence[float] = ()) -> float:
        z = self.logit(logit, standardized)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def describe(self) -> dict[str, float | int]:
        """The model as the study's dashboard shows it."""
        largest = max((abs(c) for c in self.corrections), default=0.0)
        return {
            "trials": self.trials,
            "scale": round(self.scale, 4),
            "shift": round(self.shift, 4),
            "largest_correction": round(largest, 4),
        }


def study_model_for(outcomes: Iterable[Outcome], forecaster_key: str, min_trials: int) -> StudyModel:
    """The study model of ``forecaster_key``, fitted on its outcomes among ``outcomes``."""
    taught = [o for o in outcomes if o.forecaster == forecaster_key]
    return fit_study_model(
        [o.logit for o in taught], [o.standardized for o in taught], [o.grokked for o in taught], min_trials
    )


def fit_study_model(
    logits: Sequence[float],
    standardized: Sequence[Sequence[float]],
    grokked: Sequence[bool],
    min_trials: int,
    prior_correction: float = PRIOR_CORRECTION,
) -> StudyModel:
    """The posterior mode of the study model given trials' probe logits, standardized
    features and outcomes; the shipped model until ``min_trials`` of them, with both
    outcomes, exist. Outcomes whose features are missing or of another length fit the
    scale and the shift only; ``prior_correction=0`` fits only those too."""
    labels = np.asarray([float(g) for g in grokked])
    if len(labels) < min_trials or len(set(labels.tolist())) < 2:
        return StudyModel()
    widths = {len(z) for z in standardized}
    corrected = prior_correction > 0 and len(widths) == 1 and widths != {0}
    columns = [np.asarray(logits, dtype=float), np.ones(len(labels))]
    if corrected:
        columns.extend(np.asarray(standardized, dtype=float).T)
    design = np.column_stack(columns)
    n_corrections = design.shape[1] - 2
    prior_mean = np.array([1.0, 0.0, *[0.0] * n_corrections])
    corrections_precision = [prior_correction**-2] * n_corrections if corrected else []
    precision = np.array([PRIOR_SCALE**-2, PRIOR_SHIFT**-2, *corrections_precision])
    theta = _posterior_mode(design, labels, prior_mean, precision)
    return StudyModel(float(theta[0]), float(theta[1]), tuple(float(c) for c in theta[2:]), len(labels))


def _posterior_mode(
    design: np.ndarray, labels: np.ndarray, prior_mean: np.ndarray, precision: np.ndarray
) -> np.ndarray:
    """Newton's method, with step halving, on the negative log posterior of a logistic
    model with a Gaussian prior (convex: it converges from the prior mean in a few steps)."""

    def loss(theta: np.ndarray) -> float:
        margins = design @ theta
        likelihood = np.logaddexp(0.0, margins) - labels * margins
        return float(likelihood.sum() + 0.5 * (precision * (theta - prior_mean) ** 2).sum())

    theta = prior_mean.copy()
    current = loss(theta)
    for _ in range(_NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ theta, -500, 500)))
        gradient = design.T @ (p - labels) + precision * (theta - prior_mean)
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(precision)
        step = np.linalg.solve(hessian, gradient)
        while loss(theta - step) > current and np.abs(step).max() > 1e-12:
            step = step / 2
        theta = theta - step
        current = loss(theta)
        if np.abs(step).max() < 1e-9:
            break
    return theta
