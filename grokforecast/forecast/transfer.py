"""Which features to trust on a model family no corpus holds, and a fit that keeps to them.

A feature earns a weight only if it points the same way in every family the forecaster
is fitted on. Its direction in a family is the mean, over that family's cohorts (its
corpora, each at the probe length the rule is read at), of its ROC AUC minus one half:
above zero when grokking runs have the larger values. A feature whose direction flips
between known families (the training loss's level: lower in the runs that grok in sparse
parity and the digits MLP, higher in the quadratic and embedding MLPs; its Hjorth activity
the other way round) says nothing dependable about a new family, so its weight is held at
zero; every other weight is held to its agreed sign. A family in which a feature never
varies (a grid that kept the learning rate fixed) abstains: an AUC of exactly one half
there is no evidence either way, and the sign is agreed by the families that varied it,
two at least.

Fitted without that rule, the pooled logistic regression traded such features against
each other to fit the families it saw, and ranked a new family's runs worse: held out by
family at a 10 % probe, every curve alone scored a mean ROC AUC of 0.77 (0.53 on the
digits MLP); under the rule, 0.83 (0.64).

How much weight each agreed feature gets is the second question. A logistic regression
fits it; :func:`consistent_weights` instead gives each feature its weakest direction over
the families, fitting nothing that could be traded between them. From the curves alone
the second ranks new families better; with the hyperparameters the fit does, so the
fitting step takes whichever ranks a left-out family best among the families at hand,
and with it which feature groups may carry weight at all
(:func:`grokforecast.forecast.fitting.choose_fit`; the measurements are in
``docs/benchmarks-history.md``).

Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> labels = np.tile([0, 1], 40)
    >>> families = np.repeat(["a", "b"], 40)
    >>> steady = labels + rng.normal(size=80)                        # up in both families
    >>> flips = np.where(families == "a", 1, -1) * labels + rng.normal(size=80)
    >>> directions = family_directions(np.column_stack([steady, flips]), labels, families, families)
    >>> agreed_signs(directions).tolist()
    [1, 0]
    >>> bool(consistent_weights(directions)[0] == directions[:, 0].min())
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.stats import rankdata


def family_directions(
    matrix: np.ndarray, labels: np.ndarray, families: np.ndarray, cohorts: np.ndarray
) -> np.ndarray | None:
    """Each feature's direction in each family (one row per family with both outcomes):
    the mean over the family's ``cohorts`` (runs comparable with each other: one corpus
    at one probe length) of its ROC AUC minus one half; NaN where the feature never varies
    within any of them (a family that kept the learning rate fixed cannot say which way
    it points). None where fewer than two families have both outcomes: one family cannot
    say what holds in another."""
    labels = np.asarray(labels, dtype=int)
    votes = []
    for family in sorted(set(families.tolist())):
        per_cohort = []
        for cohort in sorted(set(cohorts[families == family].tolist())):
            rows = (families == family) & (cohorts == cohort)
            if len(set(labels[rows].tolist())) == 2:
                varied = np.ptp(matrix[rows], axis=0) > 0
                per_cohort.append(np.where(varied, centred_auc(matrix[rows], labels[rows]), np.nan))
        if per_cohort:
            votes.append(_mean_of_voters(np.array(per_cohort)))
    return np.array(votes) if len(votes) >= 2 else None


def agreed_signs(directions: np.ndarray) -> np.ndarray:
    """Per feature: +1 or -1 where every family that varied it has that direction and at
    least two did, else 0."""
    voted = ~np.isnan(directions)
    signs = np.sign(np.nan_to_num(directions))
    agreed = np.select([np.all((signs == sign) | ~voted, axis=0) for sign in (1, -1)], [1, -1], 0)
    return np.where(voted.sum(axis=0) >= 2, agreed, 0).astype(int)


def consistent_weights(directions: np.ndarray) -> np.ndarray:
    """Weights for standardized features: each feature's agreed sign times its weakest
    direction over the families that varied it (the smallest ``|AUC - 0.5|``), 0 where
    they disagree.

    A feature counts as much as it holds in the family where it holds least: nothing is
    fitted to the families' pooled runs, so nothing can be traded between features to
    fit the families at hand (a unit-weighted, "improper" linear model, the kind that
    transfers to new populations better than a fitted one).
    """
    weakest = np.min(np.where(np.isnan(directions), np.inf, np.abs(directions)), axis=0)
    return agreed_signs(directions) * np.where(np.isfinite(weakest), weakest, 0.0)


def _mean_of_voters(directions: np.ndarray) -> np.ndarray:
    """The mean of each column over its non-NaN rows; NaN where every row is NaN."""
    voted = ~np.isnan(directions)
    total = np.where(voted, directions, 0.0).sum(axis=0)
    return np.where(voted.any(axis=0), total / np.maximum(voted.sum(axis=0), 1), np.nan)


def centred_auc(matrix: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each column's ROC AUC for ``labels``, minus 0.5 (ties count a half)."""
    ranks = rankdata(matrix, axis=0)
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    auc = (ranks[positives].sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return auc - 0.5


def signed_logistic(
    standardized: np.ndarray,
    labels: Sequence[int],
    regularization: float,
    signs: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Weights and intercept of an L2-regularized logistic regression (inverse strength
    ``regularization``, the intercept unpenalized, as scikit-learn's), each weight held to
    the sign in ``signs`` (+1: >= 0, -1: <= 0, 0: exactly 0); ``None`` leaves them free."""
    z, y = np.asarray(standardized, dtype=float), np.asarray(labels, dtype=float)
    n_features = z.shape[1]
    penalty = 1.0 / regularization

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights, intercept = theta[:n_features], theta[n_features]
        margins = z @ weights + intercept
        p = 0.5 * (1.0 + np.tanh(0.5 * margins))  # the logistic function, without overflow
        loss = np.logaddexp(0.0, margins).sum() - y @ margins + 0.5 * penalty * weights @ weights
        gradient = np.append(z.T @ (p - y) + penalty * weights, (p - y).sum())
        return float(loss), gradient

    bounds = [_bound(s) for s in (signs if signs is not None else [None] * n_features)]
    result = minimize(
        loss_and_gradient,
        np.zeros(n_features + 1),
        jac=True,
        method="L-BFGS-B",
        bounds=[*bounds, (None, None)],
        options={"maxiter": 5000, "gtol": 1e-8, "ftol": 1e-12},
    )
    return result.x[:n_features].copy(), float(result.x[n_features])


def _bound(sign: int | None) -> tuple[float | None, float | None]:
    if sign is None:
        return (None, None)
    return {1: (0.0, None), -1: (None, 0.0), 0: (0.0, 0.0)}[int(sign)]


def intercept_given_offsets(offsets: np.ndarray, labels: np.ndarray) -> float:
    """The maximum-likelihood intercept of ``sigmoid(offset + b)`` (Newton's method)."""
    intercept = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(offsets + intercept)))
        step = (p - labels).sum() / max((p * (1 - p)).sum(), 1e-12)
        intercept -= step
        if abs(step) < 1e-10:
            break
    return intercept
