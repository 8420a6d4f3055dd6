"""The study model: the shipped forecast updated, as a Bayesian logistic model, by a study's outcomes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from grokforecast.core.study_model import (
    PRIOR_CORRECTION,
    PRIOR_SCALE,
    PRIOR_SHIFT,
    Outcome,
    StudyModel,
    fit_study_model,
    study_model_for,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _study(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A family on which the shipped logit is noise and the first feature decides."""
    rng = np.random.default_rng(seed)
    standardized = rng.normal(size=(n, 3))
    grokked = standardized[:, 0] + 0.3 * rng.normal(size=n) > 0
    shipped_logits = 2.0 * rng.normal(size=n)
    return shipped_logits, standardized, grokked


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    positives, negatives = scores[labels], scores[~labels]
    return float((positives[:, None] > negatives[None, :]).mean())


def test_without_enough_outcomes_the_shipped_model_decides() -> None:
    logits, standardized, grokked = _study(9)
    assert fit_study_model(logits, standardized, grokked, min_trials=10) == StudyModel()
    assert fit_study_model([1.0] * 12, [(0.0,)] * 12, [True] * 12, min_trials=10) == StudyModel()
    assert StudyModel().probability(0.7, (1.0, 2.0, 3.0)) == pytest.approx(_sigmoid(0.7))


def test_the_study_model_learns_the_feature_that_decides_on_this_family() -> None:
    logits, standardized, grokked = _study(60)
    model = fit_study_model(logits, standardized, grokked, min_trials=10)
    assert model.trials == 60 and len(model.corrections) == 3
    assert model.corrections[0] > 1.0 > max(abs(c) for c in model.corrections[1:])
    assert abs(model.scale) < 0.5  # the shipped logit, noise here, is turned down

    fresh_logits, fresh_standardized, fresh_grokked = _study(400, seed=1)
    updated = np.array([model.logit(lo, z) for lo, z in zip(fresh_logits, fresh_standardized, strict=True)])
    assert _auc(updated, fresh_grokked) > 0.9 > 0.6 > _auc(fresh_logits, fresh_grokked)


def test_few_outcomes_move_the_model_less_than_many() -> None:
    logits, standardized, grokked = _study(200)
    few = fit_study_model(logits[:12], standardized[:12], grokked[:12], min_trials=10)
    many = fit_study_model(logits, standardized, grokked, min_trials=10)
    assert 0 < few.corrections[0] < many.corrections[0]


def test_the_fit_is_the_posterior_mode() -> None:
    logits, standardized, grokked = _study(40)
    model = fit_study_model(logits, standardized, grokked, min_trials=10)
    theta = np.array([model.scale, model.shift, *model.corrections])
    design = np.column_stack([logits, np.ones(40), standardized])
    prior_mean = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    precision = np.array([PRIOR_SCALE**-2, PRIOR_SHIFT**-2, *[PRIOR_CORRECTION**-2] * 3])
    p = 1 / (1 + np.exp(-design @ theta))
    gradient = design.T @ (p - grokked) + precision * (theta - prior_mean)
    assert np.abs(gradient).max() < 1e-6


def test_outcomes_without_features_update_only_the_scale_and_the_shift() -> None:
    logits, standardized, grokked = _study(30)
    rows = [tuple(z) for z in standardized[:29]] + [()]  # one probe stored before features were kept
    model = fit_study_model(logits, rows, grokked, min_trials=10)
    assert model.corrections == () and model.trials == 30
    assert fit_study_model(logits, standardized, grokked, 10, prior_correction=0).corrections == ()


def test_only_the_outcomes_of_the_same_forecaster_teach_it() -> None:
    logits, standardized, grokked = _study(20)
    outcomes = [
        Outcome("val_loss", float(lo), bool(g), tuple(z))
        for lo, z, g in zip(logits, standardized, grokked, strict=True)
    ]
    assert study_model_for(outcomes, "val_loss", 10).trials == 20
    assert study_model_for(outcomes, "full", 10) == StudyModel()
