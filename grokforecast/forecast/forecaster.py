"""``GrokForecaster``: from an early history, the probability that a run will grok.

A standardized linear model over the features of :mod:`grokforecast.forecast.features`.
Fitted on runs of several model families, each weight is held to the direction its
feature has in every one of them that varied it, or to zero where the families disagree
(or fewer than two varied it), and its size
is either fitted (an L2-regularized logistic regression) or the feature's weakest
direction over the families, whichever ranks a left-out family better
(:mod:`grokforecast.forecast.transfer`): what the forecaster learns is meant for a family
it never saw. The fitted numbers (feature names, means, scales, weights) are kept as
plain JSON, so a calibration is safe to load, readable in a diff and the same on every
machine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from grokforecast.errors import GrokforecastError
from grokforecast.forecast.features import (
    CURVE_GROUPS,
    FEATURE_GROUPS,
    HistoryLike,
    columns_of,
    curve_key,
    extract_features,
    feature_names,
    readable_part,
)
from grokforecast.forecast.transfer import intercept_given_offsets, signed_logistic
from grokforecast.vocabulary import SERIES

FORMAT = "grokforecast-forecaster"
VERSION = 1

#: Standardized features are clipped to this many standard deviations, so that one
#: feature far outside the corpus (a new workload's loss scale, say) cannot decide alone.
CLIP = 4.0

#: The paper's signal alone: Hjorth parameters and band energy of the detrended log loss.
SIGNATURE_FEATURES = ("log_activity", "mobility", "complexity", "log_band_energy")

#: The calibrations shipped as files, by what a caller can supply: every curve; what most
#: training loops log (the losses and accuracies, or the training loss and the validation
#: curves: no weight norm); or one series; each with or without the run's
#: hyperparameters. Any other set of curves is fitted from the shipped corpus when first
#: asked for (:meth:`GrokForecaster.pretrained`).
PRETRAINED_INPUTS: dict[str, tuple[str, ...]] = {
    "full": CURVE_GROUPS,
    "train_loss+train_acc+val_loss+val_acc": ("train_loss", "train_acc", "val_loss", "val_acc"),
    "train_loss+val_loss+val_acc": ("train_loss", "val_loss", "val_acc"),
    **{name: (name,) for name in SERIES},
}
PRETRAINED_INPUTS.update(
    {f"{key}+hyperparameters": (*groups, "hyperparameters") for key, groups in PRETRAINED_INPUTS.items()}
)


def inputs_key(groups: Sequence[str]) -> str:
    """The name of the calibration reading ``groups``: ``"full"`` for every curve, else
    the curves joined by ``+`` in the trainer's order, then ``+hyperparameters`` if
    given (``("val_acc", "train_loss")`` is ``"train_loss+val_acc"``)."""
    curves = [group for group in CURVE_GROUPS if group in groups]
    name = "full" if len(curves) == len(CURVE_GROUPS) else "+".join(curves)
    return f"{name}+hyperparameters" if "hyperparameters" in groups else name


def groups_of(inputs: str) -> tuple[str, ...]:
    """The feature groups a calibration name reads (the inverse of :func:`inputs_key`)."""
    parts = inputs.split("+")
    groups = [*(CURVE_GROUPS if parts[0] == "full" else [parts[0]]), *parts[1:]]
    known = (*CURVE_GROUPS, "hyperparameters")
    curves = [group for group in groups if group in CURVE_GROUPS]
    if not curves or any(g not in known for g in groups) or inputs_key(groups) != inputs:
        raise ValueError(
            f"inputs={inputs!r} must be 'full' or some of {list(CURVE_GROUPS)} joined by '+' in "
            "that order, optionally ending in '+hyperparameters' (e.g. 'train_loss+val_acc+hyperparameters')"
        )
    return tuple(groups)


def pretrained_inputs_for(history: HistoryLike, fallback: str) -> str:
    """The calibration that reads everything ``history`` holds.

    Its readable curves (:func:`~grokforecast.forecast.features.readable_part`; all of
    them: ``"full"``), with ``"+hyperparameters"`` when the history has the run's
    hyperparameters; a history of no readable curve gets the calibration of ``fallback``,
    a series it is then read as (and its reading says what is missing).
    """
    readable = readable_part(history)
    curves = [group for group in CURVE_GROUPS if group in readable] or [fallback]
    return inputs_key((*curves, *(["hyperparameters"] if "hyperparameters" in history else [])))


@dataclass(frozen=True)
class Assessment:
    """One history as the forecaster reads it: see :meth:`GrokForecaster.assess`.

    Example:

        >>> from grokforecast import GrokForecaster
        >>> from grokforecast.corpus import load_corpus
        >>> from grokforecast.forecast.fitting import probe_history
        >>> history = probe_history(load_corpus("quadratic_add97")[0], 0.1)
        >>> assessment = GrokForecaster.pretrained("full+hyperparameters").assess(history)
        >>> len(assessment.main_features), "log_activity" in assessment.features
        (3, True)
    """

    logit: float
    #: The features that moved the logit most, with their contributions.
    main_features: dict[str, float]
    #: Every feature, by name, before scaling.
    features: dict[str, float]
    #: The features as the model read them: z-scores against the fitting corpus, clipped.
    standardized: tuple[float, ...] = ()
    #: The features read at the fitted corpus's mean: those of a hyperparameter set the
    #: history does not give (:meth:`GrokForecaster.feature_matrix`).
    at_mean: tuple[str, ...] = ()

    @property
    def probability(self) -> float:
        """P(grok): the logit's probability."""
        return float(probability_of(self.logit))

    @property
    def at_mean_note(self) -> str:
        """What a reader of the forecast should know of :attr:`at_mean`; empty when none."""
        if not self.at_mean:
            return ""
        return f"{', '.join(self.at_mean)} read at the fitted corpus's mean (hyperparameters not given)"


def probability_of(logit: float | np.ndarray) -> float | np.ndarray:
    """The probability of a logit (or of each of an array's)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logit, dtype=float)))


class GrokForecaster:
    """Forecast whether a run will grok from the first few percent of its curves.

    Example:

        >>> import grokforecast as gf
        >>> from grokforecast.corpus import load_corpus
        >>> record = load_corpus("quadratic_add97")[0]
        >>> history = gf.History.from_curves(record.curves, until=60)   # the first 10 % of 600 steps
        >>> p = gf.GrokForecaster.pretrained().predict_proba(history)
        >>> 0.0 <= p <= 1.0
        True

    Args:
        groups:
            The feature groups to use (keys of ``FEATURE_GROUPS``); a history must hold the
            series of each. The default uses every curve a grokforecast trainer records;
            add ``"hyperparameters"`` to also use ``history["hyperparameters"]``.
        features:
            Names of the features to use, a subset of the groups' features (e.g. only the
            paper's signature, ``SIGNATURE_FEATURES``); default: all of them.
        regularization:
            Inverse L2 strength ``C`` of the logistic regression. The default is strong:
            chosen by nested leave-one-family-out (for each held-out family, the ``C``
            that scored best on the other families each held out in turn), it was
            0.003-0.01 for seven corpora of nine; a weaker one fits the families it saw
            better and new ones worse (``docs/benchmarks-history.md``).
    """

    def __init__(
        self,
        groups: Sequence[str] = CURVE_GROUPS,
        features: Sequence[str] | None = None,
        regularization: float = 0.01,
    ) -> None:
        unknown = [g for g in groups if g not in FEATURE_GROUPS]
        if unknown or not groups:
            raise ValueError(f"groups={list(groups)} must be a non-empty subset of {list(FEATURE_GROUPS)}")
        available = feature_names(tuple(groups))
        if features is not None and (not features or set(features) - set(available)):
            raise ValueError(f"features={list(features)} must be a non-empty subset of {available}")
        if not regularization > 0:
            raise ValueError(f"regularization={regularization} must be > 0")
        self.groups = tuple(groups)
        self.regularization = regularization
        self.features = [name for name in available if features is None or name in features]
        self._mean: np.ndarray | None = None
        self._scale: np.ndarray | None = None
        self._weights: np.ndarray | None = None
        self._intercept = 0.0
        #: How the weights were set: ``"logistic"`` (a fit), ``"consistent"`` (each
        #: feature's weakest direction over the fitted families, :mod:`~.transfer`) or
        #: ``"given"`` (by the caller of :meth:`fit_features`).
        self.weighting = "logistic"
        #: The groups whose features may carry weight (the others' weights are 0): every
        #: group, unless :func:`~grokforecast.forecast.fitting.fit_at_probes` chose fewer.
        self.weighted_groups = self.groups
        #: Whether this is a shipped calibration (:meth:`pretrained`), which reads any
        #: history (:meth:`reader_of`); one fitted by its caller reads exactly its groups.
        self.shipped = False
        self._readers: dict[str, GrokForecaster] = {}

    @property
    def fitted(self) -> bool:
        return self._weights is not None

    def feature_matrix(self, histories: Sequence[HistoryLike]) -> np.ndarray:
        """One row of features per history; a fitted forecaster reads the features of a
        hyperparameter set a history does not give at its corpus's mean (:meth:`assess`
        names them), which leaves the ranking of a study that does not vary that set to
        the rest."""
        return self._read_at_mean(self._extracted(histories))

    def _extracted(self, histories: Sequence[HistoryLike]) -> np.ndarray:
        rows = [extract_features(h, self.groups) for h in histories]
        return np.array([[row[name] for name in self.features] for row in rows]).reshape(len(rows), -1)

    def _read_at_mean(self, matrix: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(matrix), self._mean, matrix) if self.fitted else matrix

    def fit(
        self,
        histories: Sequence[HistoryLike],
        grokked: Sequence[bool],
        families: Sequence[str] | None = None,
        corpora: Sequence[str] | None = None,
    ) -> GrokForecaster:
        """Calibrate on labelled histories (both labels must occur).

        With ``families`` (each history's model family), two or more of them with both
        outcomes, the weights are fitted for families not among them, as the shipped
        calibrations are (:func:`~grokforecast.forecast.fitting.fit_at_probes`): each
        feature keeps the direction the families agree on, or no weight; ``corpora``
        names the histories that are comparable within a family (default: the
        families). Otherwise every weight is free.

        A shipped calibration (:meth:`pretrained`) reads the histories as it forecasts
        them (:meth:`reader_of`), and where every one of them lacks some of its curves or
        its hyperparameters, it is refitted on the rest; after the fit it reads exactly
        those.
        """
        if self.shipped:
            histories = [readable_part(history) for history in histories]
            held = tuple(group for group in self.groups if all(group in h for h in histories))
            if held != self.groups and any(group in CURVE_GROUPS for group in held):
                self.groups = held
                self.features = [name for name in feature_names(held) if name in self.features]
        matrix = self._extracted(histories)
        if families is None:
            return self.fit_features(matrix, grokked)
        self._refuse_missing(matrix)  # before the directions are measured on it
        from grokforecast.forecast.fitting import fit_at_probes

        family_of = np.asarray(families)
        cohort_of = np.asarray(corpora) if corpora is not None else family_of
        return fit_at_probes(self, {1.0: matrix}, np.asarray(grokked, dtype=int), family_of, cohort_of)

    def fit_features(
        self,
        matrix: np.ndarray,
        grokked: Sequence[bool],
        signs: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> GrokForecaster:
        """Calibrate on a precomputed :meth:`feature_matrix`: a logistic regression with
        each weight held to the sign of its feature in ``signs`` (+1, -1, or 0 for no
        weight; None: free), or, given ``weights`` (one per standardized feature), only
        the intercept (:attr:`weighting` is then ``"given"``, until
        :func:`~grokforecast.forecast.fitting.fit_at_probes` names the rule it took them from)."""
        labels = np.asarray(grokked, dtype=int)
        self.weighted_groups, self.shipped = self.groups, False
        if len(labels) != len(matrix):
            raise ValueError(f"{len(matrix)} histories but {len(labels)} labels")
        if len(set(labels.tolist())) < 2:
            raise ValueError("fitting needs grokking and non-grokking runs; the labels are all one class")
        self._refuse_missing(matrix)
        self._mean = matrix.mean(axis=0)
        self._scale = np.where(matrix.std(axis=0) > 0, matrix.std(axis=0), 1.0)
        standardized = self._standardize(matrix)
        if weights is None:
            self._weights, self._intercept = signed_logistic(standardized, labels, self.regularization, signs)
            self.weighting = "logistic"
        else:
            self._weights = np.asarray(weights, dtype=float).copy()
            self._intercept = intercept_given_offsets(standardized @ self._weights, labels)
            self.weighting = "given"
        return self

    def _refuse_missing(self, matrix: np.ndarray) -> None:
        """A fit learns every feature it reads: a run without some hyperparameter cannot
        teach its weight."""
        if np.isnan(matrix).any():
            missing = [self.features[i] for i in np.flatnonzero(np.isnan(matrix).any(axis=0))]
            raise ValueError(
                f"fitting needs every hyperparameter of every run; features {missing} are missing in some: "
                "give lr, weight_decay and data_fraction, or fit without the hyperparameters"
            )

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise GrokforecastError(
                "this GrokForecaster is not fitted; call fit() or use GrokForecaster.pretrained()"
            )

    def _standardize(self, matrix: np.ndarray) -> np.ndarray:
        """z-scores, clipped to +-CLIP: a run unlike the corpus leans, it does not saturate."""
        return np.clip((matrix - self._mean) / self._scale, -CLIP, CLIP)

    def _logits(self, matrix: np.ndarray) -> np.ndarray:
        self._require_fitted()
        return self._standardize(matrix) @ self._weights + self._intercept

    def reader_of(self, history: HistoryLike) -> tuple[GrokForecaster, HistoryLike]:
        """The calibration that forecasts ``history``, and the history as it reads it.

        A forecaster fitted by its caller reads exactly its own groups. A shipped one
        (:meth:`pretrained`) reads what the history holds of them
        (:func:`~grokforecast.forecast.features.readable_part`: curves under common
        spellings, unmeasured NaN points dropped): a history without some of its curves
        or its hyperparameters, or with too few points of a curve, is forecast by the
        shipped calibration of the rest, as :meth:`pretrained_for` would choose it.

        Example:

            >>> import numpy as np
            >>> history = {"train_loss": np.geomspace(4.0, 0.1, 100),
            ...            "val_loss": np.linspace(4.0, 3.0, 10), "val_loss_steps": np.arange(0, 100, 10)}
            >>> reader, _ = GrokForecaster.pretrained().reader_of(history)
            >>> reader.groups
            ('train_loss', 'val_loss')
        """
        if not self.shipped:
            return self, history
        part = readable_part(history)
        groups = tuple(group for group in self.groups if group in part)
        if groups == self.groups:
            return self, part
        if not any(group in CURVE_GROUPS for group in groups):
            return self, history  # nothing of it readable: its own reading names what is missing
        inputs = inputs_key(groups)
        if inputs not in self._readers:
            self._readers[inputs] = GrokForecaster.pretrained(inputs)
        return self._readers[inputs], part

    def predict_proba(self, history: HistoryLike) -> float:
        """P(grok) of one early history, a float in [0, 1]."""
        return float(probability_of(self.predict_logit(history)))

    def predict_logit(self, history: HistoryLike) -> float:
        """``log(p / (1 - p))`` of :meth:`predict_proba`, without its rounding at 0 and 1."""
        self._require_fitted()
        reader, readable = self.reader_of(history)
        return float(reader._logits(reader.feature_matrix([readable]))[0])

    def predict_proba_features(self, matrix: np.ndarray) -> np.ndarray:
        return probability_of(self._logits(matrix))

    def predict_logit_features(self, matrix: np.ndarray) -> np.ndarray:
        return self._logits(matrix)

    def rescale(self, slope: float, intercept: float) -> None:
        """Make the logit ``slope * logit + intercept``: a new probability scale, the
        same ranking when ``slope > 0`` (see :mod:`grokforecast.forecast.fitting`)."""
        self._require_fitted()
        self._weights = slope * self._weights
        self._intercept = slope * self._intercept + intercept

    def explain(self, history: HistoryLike, top: int = 3) -> dict[str, float]:
        """The ``top`` features that moved the forecast most, with their logit contributions."""
        return self.assess(history, top).main_features

    def assess(self, history: HistoryLike, top: int = 3) -> Assessment:
        """Logit, main features and every feature value of one history, its features
        extracted once (what a pruner records with its decision)."""
        self._require_fitted()
        reader, readable = self.reader_of(history)
        extracted = reader._extracted([readable])
        matrix = reader._read_at_mean(extracted)
        return Assessment(
            logit=float(reader._logits(matrix)[0]),
            main_features=reader._main_features(matrix, top),
            features=dict(zip(reader.features, matrix[0].tolist(), strict=True)),
            standardized=tuple(round(z, 6) for z in reader._standardize(matrix)[0].tolist()),
            at_mean=tuple(
                name for name, value in zip(reader.features, extracted[0], strict=True) if np.isnan(value)
            ),
        )

    def _main_features(self, matrix: np.ndarray, top: int) -> dict[str, float]:
        contributions = self._standardize(matrix)[0] * self._weights
        order = np.argsort(-np.abs(contributions))[:top]
        return {self.features[i]: round(float(contributions[i]), 4) for i in order}

    # -- persistence -------------------------------------------------------------------

    def to_dict(self) -> dict:
        self._require_fitted()
        return {
            "format": FORMAT,
            "version": VERSION,
            "groups": list(self.groups),
            "regularization": self.regularization,
            "features": self.features,
            "mean": self._mean.tolist(),
            "scale": self._scale.tolist(),
            "weights": self._weights.tolist(),
            "intercept": self._intercept,
            "weighting": self.weighting,
            "weighted_groups": list(self.weighted_groups),
        }

    @classmethod
    def from_dict(cls, data: dict) -> GrokForecaster:
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise GrokforecastError(
                f"not a grokforecast forecaster of version {VERSION} "
                f"(format {data.get('format')!r}, version {data.get('version')!r})"
            )
        forecaster = cls(data["groups"], data["features"], data["regularization"])
        if forecaster.features != data["features"]:
            raise GrokforecastError("the forecaster file's features do not match this grokforecast's")
        forecaster._mean, forecaster._scale = np.array(data["mean"]), np.array(data["scale"])
        forecaster._weights, forecaster._intercept = np.array(data["weights"]), float(data["intercept"])
        forecaster.weighting = data.get("weighting", "logistic")
        forecaster.weighted_groups = tuple(data.get("weighted_groups", forecaster.groups))
        return forecaster

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> GrokForecaster:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as error:
            raise GrokforecastError(f"cannot read forecaster {path}: {error}") from None

    @classmethod
    def pretrained_for(cls, history: HistoryLike) -> GrokForecaster:
        """The calibration that reads everything ``history`` holds: every one of its
        curves, and its hyperparameters when it has them (the one ``HjorthPruner`` takes
        for a trial's history).

        Example:

            >>> import numpy as np
            >>> history = {"val_loss": np.linspace(3.0, 2.0, 30), "val_acc": np.linspace(0.0, 0.4, 30),
            ...            "hyperparameters": {"learning_rate": 1e-3, "wd": 1.0, "train_fraction": 0.5}}
            >>> forecaster = GrokForecaster.pretrained_for(history)
            >>> forecaster.groups, 0.0 < forecaster.predict_proba(history) < 1.0
            (('val_loss', 'val_acc', 'hyperparameters'), True)
        """
        history = columns_of(history)
        if not any(curve_key(history, group) for group in CURVE_GROUPS):
            raise ValueError(
                f"the history holds none of the curves {list(CURVE_GROUPS)} (it has {sorted(history)}); "
                "give at least one"
            )
        return cls.pretrained(pretrained_inputs_for(history, CURVE_GROUPS[0]))

    @classmethod
    def pretrained(cls, inputs: str = "full") -> GrokForecaster:
        """The calibration for ``inputs``, fitted on the shipped corpus.

        ``inputs`` names what the caller can supply (:func:`inputs_key`): ``"full"``
        (every series the trainer records), or the series it has joined by ``+``
        (``"train_loss"``, ``"val_loss+val_acc"``, ...), each also with
        ``"+hyperparameters"`` (the run's lr, weight decay and data fraction). The
        calibrations of :data:`PRETRAINED_INPUTS` ship as files; any other is fitted
        from the shipped corpus when first asked for (a few seconds, once per process).

        A shipped calibration reads any history: one that lacks some of its series is
        forecast from those it has (:meth:`reader_of`), so ``pretrained()`` takes a
        history of the training loss alone, or of whatever a training loop logged.
        """
        groups_of(inputs)  # a one-line error for a name that reads nothing known
        if inputs in PRETRAINED_INPUTS:
            text = resources.files("grokforecast.forecast").joinpath(f"pretrained/{inputs}.json").read_text()
            forecaster = cls.from_dict(json.loads(text))
        else:
            from grokforecast.forecast.fitting import fitted_without

            forecaster = cls.from_dict(fitted_without(inputs, ()).to_dict())
        forecaster.shipped = True
        return forecaster
