"""Features of an early training history, the forecaster's inputs.

A history is what a run has shown up to its probe step::

    {"train_loss": [...], "train_acc": [...], "val_loss": [...], "val_acc": [...],
     "weight_norm": [...], "<name>_steps": [...]}

Every series is optional except the one a feature group needs; a series without
``<name>_steps`` is taken at steps ``0..n-1``. Two points of a series are enough (an
evaluation once an epoch), except for the training loss, whose signature needs six.
Accuracies are fractions in [0, 1] or percentages (a history whose accuracy series hold a
value above 1 gives both in per cent). Features are made comparable across workloads and
probe lengths: levels are logs, changes are measured over fractions of the probe window
rather than per step, and the weight norm enters only as a ratio.

Feature groups, by the series they read:

- ``train_loss``: the paper's signature (:func:`grokforecast.spectral.loss_signature`:
  log activity, mobility, complexity, log band energy of the detrended log loss) and
  the loss's level and recent slope;
- ``train_acc``: how far memorization has got, and how early it happened;
- ``val_loss`` / ``val_acc``: level, best value and recent trend of validation;
- ``weight_norm``: Omnigrok's signal, the relative shrinkage of the weights;
- ``hyperparameters`` (optional, from ``history["hyperparameters"]`` with keys ``lr``,
  ``weight_decay``, ``data_fraction``, or their common spellings such as
  ``learning_rate``, ``wd``, ``train_fraction``): the data fraction, which no curve reveals but
  which decides most of whether a run groks, also as a log because the grokking time
  goes as a power of it (t4 = a r**-gamma + b), and Omnigrok's weight-decay rate
  ``lr * weight_decay``, which sets how soon the weights shrink to the generalizing norm.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grokforecast.history import as_number, complete_sets, in_range, recognised_names
from grokforecast.spectral import MIN_LENGTH, check_signal, loss_signature
from grokforecast.vocabulary import (
    CURVE_GROUPS,
    HYPERPARAMETER_SETS,
    HYPERPARAMETERS,
    SERIES_SPELLINGS,
    STEP_SPELLINGS,
)

#: What the forecaster reads: a :class:`~grokforecast.history.History`, or any mapping of
#: the same keys (``"train_loss"``, ``"train_loss_steps"``, ..., ``"hyperparameters"``).
HistoryLike = Mapping[str, "np.ndarray | list[float] | Mapping[str, float]"]

#: Floor under activities and energies before taking their log (a flat curve has 0).
_TINY = 1e-12

#: The series each feature group reads, and the features it yields.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "train_loss": (
        "log_activity",
        "mobility",
        "complexity",
        "log_band_energy",
        "train_loss_last",
        "train_loss_slope",
    ),
    "train_acc": ("train_acc_last", "memorized_at"),
    "val_loss": ("val_loss_last", "val_loss_slope"),
    "val_acc": ("val_acc_last", "val_acc_best", "val_acc_slope"),
    "weight_norm": ("weight_norm_ratio", "weight_norm_slope"),
    "hyperparameters": ("data_fraction", "log_data_fraction", "log_decay_rate"),
}


#: The hyperparameters each hyperparameter feature is computed from: one set of
#: :data:`~grokforecast.vocabulary.HYPERPARAMETER_SETS` each (NaN where a history lacks it).
HYPERPARAMETER_FEATURE_INPUTS: dict[str, tuple[str, ...]] = {
    "data_fraction": HYPERPARAMETER_SETS[0],
    "log_data_fraction": HYPERPARAMETER_SETS[0],
    "log_decay_rate": HYPERPARAMETER_SETS[1],
}

#: The fewest points a series is read from: a level and a trend need two (a project that
#: evaluates once an epoch has two or three evaluations by a short probe).
FEWEST_POINTS = 2


def fewest_points(name: str) -> int:
    """The fewest points of series ``name`` its features are read from: two, or for the
    training loss :data:`SIGNATURE_POINTS`."""
    return SIGNATURE_POINTS if name == "train_loss" else FEWEST_POINTS


def steps_of(history: HistoryLike, name: str, points: int) -> np.ndarray:
    """The steps of series ``name`` of ``points`` values: ``history["<name>_steps"]``, or
    the log's step column of as many entries (:data:`STEP_SPELLINGS`; for ``val/loss``,
    ``val/step`` before ``step``; in any case), or ``0..points-1`` where the history gives
    neither.

    >>> steps_of({"Val/Loss": [2.0, 1.0], "Val/Step": [0, 50], "Step": [0, 1]}, "Val/Loss", 2).tolist()
    [0.0, 50.0]
    """
    steps_key = f"{name}_steps"
    if steps_key in history:
        return np.asarray(history[steps_key], dtype=float)
    split = name.rpartition("/")[0]
    columns = [f"{split}/{key}" for key in STEP_SPELLINGS] if split else []
    spelled = _keys_by_lower_case(history)
    for key in (spelled.get(column.lower()) for column in (*columns, *STEP_SPELLINGS)):
        if key is not None and np.shape(history[key]) == (points,):
            return np.asarray(history[key], dtype=float)
    return np.arange(points, dtype=float)


def columns_of(history: HistoryLike | Sequence[Mapping[str, Any]]) -> HistoryLike:
    """``history`` as a mapping of columns: itself where it is one (a dict, a
    :class:`~grokforecast.history.History`, a pandas DataFrame), or, for a log kept as a
    list of rows (JSON lines, HuggingFace's ``trainer.state.log_history``), one column per
    key, NaN in the rows that lack it (the unmeasured points :func:`readable_part` drops).

    >>> log = [{"step": 0, "loss": 2.0}, {"step": 10, "loss": 1.5, "eval_loss": 2.1}]
    >>> {key: column.tolist() for key, column in columns_of(log).items()}
    {'step': [0.0, 10.0], 'loss': [2.0, 1.5], 'eval_loss': [nan, 2.1]}
    """
    if isinstance(history, Mapping) or hasattr(history, "columns"):
        return history
    rows = isinstance(history, Sequence) and not isinstance(history, str) and len(history) > 0
    if rows and all(isinstance(row, Mapping) for row in history):
        keys = dict.fromkeys(key for row in history for key in row)
        return {key: np.array([_number(row.get(key)) for row in history]) for key in keys}
    raise ValueError(
        f"a history is a mapping of curves (train_loss, val_loss, ...) or a non-empty list of rows "
        f"(dicts with a step and the values logged there); got {type(history).__name__}"
    )


def _number(value: Any) -> float:
    """A row's entry as a float: NaN where the row lacks it or it is not a number (a
    column the forecaster does not read may hold text)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def series(history: HistoryLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of one series of ``history``, checked (finite, long enough)."""
    if name not in history:
        raise ValueError(f"history has no {name!r} series (it has {sorted(history)})")
    values = check_signal(history[name], name, fewest_points(name))
    steps = steps_of(history, name, len(values))
    if steps.shape != values.shape:
        raise ValueError(f"{name}_steps has {len(steps)} entries but {name} has {len(values)}")
    return steps, values


#: The series that are accuracies, read as fractions or percentages (:func:`accuracy_unit`).
ACCURACY_SERIES = ("train_acc", "val_acc")


def accuracy_unit(history: HistoryLike) -> float:
    """1 where the history's accuracies are fractions, 100 where they are percentages
    (some value above 1). Both series are judged together: a validation accuracy in per
    cent can sit below 1 for a while on a task of more than 100 classes, while the
    training accuracy, memorizing, passes it."""
    highest = 0.0
    for name in ACCURACY_SERIES:
        values = np.asarray(history.get(name, []), dtype=float)
        finite = values[np.isfinite(values)]
        if not finite.size:
            continue
        if finite.min() < 0 or finite.max() > 100:
            bad = finite.min() if finite.min() < 0 else finite.max()
            raise ValueError(
                f"{name} has the value {bad:g}; give accuracies as fractions in [0, 1] "
                "or percentages in [0, 100]"
            )
        highest = max(highest, float(finite.max()))
    return 100.0 if highest > 1.0 else 1.0


def accuracy(history: HistoryLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of the accuracy series ``name``, as fractions."""
    steps, values = series(history, name)
    return steps, values / accuracy_unit(history)


def curve_key(history: HistoryLike, name: str) -> str | None:
    """The key that holds curve ``name`` in ``history``: its own name, or else its first
    common spelling there (:data:`SERIES_SPELLINGS`), in any case (``Loss/train``,
    ``Val_Loss``); None where it has neither.

    >>> curve_key({"Loss/train": [2.0, 1.0], "Accuracy/test": [0.1, 0.2]}, "val_acc")
    'Accuracy/test'
    """
    if name in history:
        return name
    spelled = _keys_by_lower_case(history)
    return next((spelled[key] for key in (name, *SERIES_SPELLINGS[name]) if key in spelled), None)


def _keys_by_lower_case(history: HistoryLike) -> dict[str, str]:
    """``history``'s keys by their lower-case spelling (the first of any that differ in
    case alone)."""
    spelled: dict[str, str] = {}
    for key in history:
        if isinstance(key, str):
            spelled.setdefault(key.lower(), key)
    return spelled


def readable_part(history: HistoryLike) -> dict[str, Any]:
    """What of ``history`` the forecaster can read, under its own names.

    Each curve, found under its name or a common spelling (:data:`SERIES_SPELLINGS`), less
    its unmeasured points (NaN: a log with a row per step holds them where it did not
    evaluate; the other points keep their steps, given or implied), and left out where
    fewer points remain than its features need (:func:`fewest_points`); the
    hyperparameters as given. A malformed curve (two-dimensional, or steps of another
    length) is passed on as it is, for :func:`series` to name what is wrong with it.

    >>> part = readable_part({"loss": [2.0, 1.0, 0.5], "val_accuracy": [0.1, float("nan"), 0.3]})
    >>> sorted(part), part["val_acc_steps"].tolist()
    (['val_acc', 'val_acc_steps'], [0.0, 2.0])
    """
    history = columns_of(history)
    part: dict[str, Any] = {}
    for name in CURVE_GROUPS:
        key = curve_key(history, name)
        if key is None:
            continue
        values = np.asarray(history[key], dtype=float)
        steps = steps_of(history, key, values.size)
        if values.ndim != 1 or steps.shape != values.shape:
            part[name], part[f"{name}_steps"] = values, steps
            continue
        measured = ~np.isnan(values) & ~np.isnan(steps)
        if measured.sum() >= fewest_points(name):
            part[name], part[f"{name}_steps"] = values[measured], steps[measured]
    if "hyperparameters" in history:
        part["hyperparameters"] = history["hyperparameters"]
    return part


def _recent_change(steps: np.ndarray, values: np.ndarray) -> float:
    """Change of ``values`` over the last half of the window, by least squares.

    Expressed per whole window (slope times window length), so a 60-step and a 300-step
    probe of the same curve shape give the same number. Where the last half holds a
    single point (an evaluation once an epoch), the change is that of the last two.
    """
    span = steps[-1] - steps[0]
    if span <= 0:
        return 0.0
    recent = steps >= steps[0] + span / 2
    recent[-2:] = True
    slope = np.polyfit(steps[recent], values[recent], 1)[0]
    return float(slope * span)


def _tail_mean(values: np.ndarray, fraction: float = 0.1) -> float:
    return float(values[-max(1, int(len(values) * fraction)) :].mean())


def detrend_window(n_points: int) -> int:
    """The moving-average window for a loss of ``n_points``: 25, or half the history when
    it is shorter than 50 points, so that the detrended residual stays longer than the
    window and its spectrum resolves the band below the window's cut-off (otherwise the
    band energy is the whole residual, equal to the activity)."""
    return max(3, min(25, n_points // 2))


#: The fewest points of a training loss its signature is read from: as many as leave its
#: detrended residual :data:`MIN_LENGTH` points (the Hjorth parameters need second
#: differences).
SIGNATURE_POINTS = next(n for n in itertools.count(MIN_LENGTH) if n >= detrend_window(n) + MIN_LENGTH - 1)


def loss_series(history: HistoryLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of the loss ``name``, each exact zero after its first positive
    value read as its smallest positive value: a cross-entropy underflows to 0 in float32
    once every example's margin is large, and its log would be minus infinity. A negative
    value, or a zero before any positive one (an accuracy starts at 0, a loss does not),
    is refused."""
    steps, loss = series(history, name)
    if (loss < 0).any():
        raise ValueError(
            f"{name} has the value {loss[loss < 0][0]:g}; a loss is never negative: is it a loss?"
        )
    if loss[0] == 0:
        raise ValueError(f"{name} starts at 0, as an accuracy does; a loss starts positive: is it a loss?")
    return steps, np.where(loss > 0, loss, loss[loss > 0].min())


def _train_loss_features(history: HistoryLike) -> dict[str, float]:
    steps, loss = loss_series(history, "train_loss")
    signature = loss_signature(loss, steps, window=detrend_window(len(loss)))
    log_loss = np.log(loss)
    return {
        "log_activity": float(np.log10(signature.activity + _TINY)),
        "mobility": signature.mobility,
        "complexity": signature.complexity,
        "log_band_energy": float(np.log10(signature.band_energy + _TINY)),
        "train_loss_last": _tail_mean(log_loss),
        "train_loss_slope": _recent_change(steps, log_loss),
    }


def _train_acc_features(history: HistoryLike) -> dict[str, float]:
    steps, fraction = accuracy(history, "train_acc")
    memorized = np.flatnonzero(fraction >= 1.0)
    span = max(steps[-1] - steps[0], 1.0)
    return {
        "train_acc_last": _tail_mean(fraction),
        # 0 = memorized at once, 1 = at the probe step, 2 = not yet.
        "memorized_at": float((steps[memorized[0]] - steps[0]) / span) if memorized.size else 2.0,
    }


def _val_loss_features(history: HistoryLike) -> dict[str, float]:
    steps, loss = loss_series(history, "val_loss")
    log_loss = np.log(loss)
    return {"val_loss_last": float(log_loss[-1]), "val_loss_slope": _recent_change(steps, log_loss)}


def _val_acc_features(history: HistoryLike) -> dict[str, float]:
    steps, fraction = accuracy(history, "val_acc")
    return {
        "val_acc_last": float(fraction[-1]),
        "val_acc_best": float(fraction.max()),
        "val_acc_slope": _recent_change(steps, fraction),
    }


def _weight_norm_features(history: HistoryLike) -> dict[str, float]:
    steps, norm = series(history, "weight_norm")
    log_norm = np.log(np.maximum(norm, _TINY))
    return {
        "weight_norm_ratio": float(log_norm[-1] - log_norm[0]),
        "weight_norm_slope": _recent_change(steps, log_norm),
    }


def _hyperparameter_features(history: HistoryLike) -> dict[str, float]:
    """The hyperparameter features, NaN for those of a set the history does not give
    (:data:`~grokforecast.vocabulary.HYPERPARAMETER_SETS`; the forecaster reads them at
    its fitted corpus's mean)."""
    given = history.get("hyperparameters")
    names = recognised_names(given) if isinstance(given, Mapping) else {}
    numbers = {name: as_number(given[names[name]]) for name in names}
    values = {name: numbers[name] for name in HYPERPARAMETERS if numbers.get(name) is not None}
    if not complete_sets(values):
        raise ValueError(
            f"history['hyperparameters'] must hold lr and weight_decay, or data_fraction, or all three, as "
            f"numbers (or under common spellings, such as learning_rate, wd, train_fraction), got {given!r}"
        )
    wrong = {name: value for name, value in values.items() if not in_range(name, value)}
    if wrong:
        raise ValueError(
            f"hyperparameters {wrong} are out of range (lr > 0, weight_decay >= 0, 0 < data_fraction <= 1)"
        )
    lr, weight_decay, fraction = (values.get(name, np.nan) for name in HYPERPARAMETERS)
    return {
        "data_fraction": fraction,
        "log_data_fraction": float(np.log10(fraction)),
        "log_decay_rate": float(np.log10(lr * weight_decay + _TINY)),
    }


_EXTRACTORS = {
    "train_loss": _train_loss_features,
    "train_acc": _train_acc_features,
    "val_loss": _val_loss_features,
    "val_acc": _val_acc_features,
    "weight_norm": _weight_norm_features,
    "hyperparameters": _hyperparameter_features,
}


def extract_features(history: HistoryLike, groups: tuple[str, ...] = CURVE_GROUPS) -> dict[str, float]:
    """The features of the named groups, each a finite float, except the hyperparameter
    features of a set the history does not give: NaN."""
    history = columns_of(history)
    features: dict[str, float] = {}
    for group in groups:
        if group not in _EXTRACTORS:
            raise ValueError(f"unknown feature group {group!r}; choose from {list(FEATURE_GROUPS)}")
        features.update(_EXTRACTORS[group](history))
    return features


def feature_names(groups: tuple[str, ...]) -> list[str]:
    return [name for group in groups for name in FEATURE_GROUPS[group]]
