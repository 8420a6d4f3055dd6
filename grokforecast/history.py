"""``History``: what a trial has measured so far, the one input of the stopping policy.

A history holds series (steps and values each) and, when known, the run's
hyperparameters. It reads like the mapping the forecaster takes
(:mod:`grokforecast.forecast.features`): ``history["val_acc"]``,
``history["val_acc_steps"]``, ``history["hyperparameters"]``. There is one constructor per
place a history comes from, so every backend hands the policy the same thing for the same
measurements:

- :meth:`History.from_curves`: a trainer's :class:`~grokforecast.curves.Curves` (a live
  sweep trial, a corpus record with :meth:`History.from_record`);
- :meth:`History.from_points`: ``(step, value)`` pairs gathered from reports (Ray Tune
  results, an Optuna :class:`~grokforecast.Monitor`);
- :meth:`History.from_intermediate_values`: an Optuna trial's intermediate values;
- :meth:`History.from_stored`: the dense curves of the study database.

Example:

    >>> from grokforecast.history import History
    >>> history = History.from_points({"train_loss": [(0, 2.3), (1, 2.1), (2, 1.8)]})
    >>> history.newest_step, history["train_loss_steps"].tolist()
    (2, [0, 1, 2])
    >>> history.until(1)["train_loss"].tolist()
    [2.3, 2.1]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from grokforecast.vocabulary import (
    CURVE_GROUPS,
    EVALUATED_CURVES,
    HYPERPARAMETER_SETS,
    HYPERPARAMETER_SPELLINGS,
    HYPERPARAMETERS,
)

if TYPE_CHECKING:
    from grokforecast.curves import Curves
    from grokforecast.records import RunRecord

Points = Iterable[tuple[int, float]]
SeriesArrays = tuple[np.ndarray, np.ndarray]


def hyperparameters_from(
    params: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> dict[str, float] | None:
    """The forecaster's hyperparameters (``lr``, ``weight_decay``, ``data_fraction``) from a
    trial's parameters: every set of :data:`~grokforecast.vocabulary.HYPERPARAMETER_SETS`
    whose values are all there, numbers and in range (``lr > 0``, ``weight_decay >= 0``,
    ``0 < data_fraction <= 1``); None when no set is.

    ``names`` says which parameter holds each; by default a parameter is recognised by
    its common spellings (:data:`~grokforecast.vocabulary.HYPERPARAMETER_SPELLINGS`).

    >>> hyperparameters_from({"optimizer.learning_rate": 3e-3, "wd": 1, "train_fraction": 0.4})
    {'lr': 0.003, 'weight_decay': 1.0, 'data_fraction': 0.4}
    >>> hyperparameters_from({"lr": 3e-3, "weight_decay": 1.0, "n_layers": 2})  # a fixed data set
    {'lr': 0.003, 'weight_decay': 1.0}
    >>> hyperparameters_from({"lr": "1e-3", "wd": "0.5", "frac_train": "0.3"})  # a config saved as text
    {'lr': 0.001, 'weight_decay': 0.5, 'data_fraction': 0.3}
    """
    names = names or recognised_names(params)
    given = {name: as_number(params.get(names[name])) for name in HYPERPARAMETERS if name in names}
    valid = {name: value for name, value in given.items() if value is not None and in_range(name, value)}
    complete = complete_sets(valid)
    return {name: valid[name] for name in HYPERPARAMETERS if name in complete} or None


def as_number(value: Any) -> float | None:
    """``value`` as a float: a number, or a string that spells one (a config saved as
    text: ``"1e-3"``); None otherwise (a flag, a name, a missing value)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def complete_sets(names: Iterable[str]) -> set[str]:
    """Those of ``names`` that make up whole sets of
    :data:`~grokforecast.vocabulary.HYPERPARAMETER_SETS` (``{"lr"}`` alone makes none)."""
    names = set(names)
    return {name for group in HYPERPARAMETER_SETS if set(group) <= names for name in group}


def in_range(name: str, value: float) -> bool:
    """Whether ``value`` can be hyperparameter ``name`` (``lr > 0``, ``weight_decay >= 0``,
    ``0 < data_fraction <= 1``)."""
    return {"lr": value > 0, "weight_decay": value >= 0, "data_fraction": 0 < value <= 1}[name]


def recognised_names(params: Mapping[str, Any]) -> dict[str, str]:
    """For each hyperparameter, the first parameter spelled as it commonly is."""
    found: dict[str, str] = {}
    for param in params:
        spelled = param.replace("/", ".").rsplit(".", 1)[-1].lower().replace("-", "_")
        for name, spellings in HYPERPARAMETER_SPELLINGS.items():
            if spelled in spellings and name not in found:
                found[name] = param
    return found


#: Fewest reports from which a series' direction is judged (:func:`looks_like_accuracy`).
MIN_POINTS_TO_RECOGNISE = 8


def looks_like_accuracy(values: Mapping[int, float]) -> bool:
    """Whether an Optuna trial's intermediate values read as an accuracy rather than a
    loss: every value in [0, 1], and rising (the median of the last quarter above that of
    the first). A loss falls; a study that reports accuracy while its pruner expects a loss
    is the commonest first try, and the log of its zeros would be unreadable."""
    ordered = np.array([values[step] for step in sorted(values)], dtype=float)
    if len(ordered) < MIN_POINTS_TO_RECOGNISE or not np.isfinite(ordered).all():
        return False
    if ordered.min() < 0 or ordered.max() > 1:
        return False
    quarter = len(ordered) // 4
    return bool(np.median(ordered[-quarter:]) > np.median(ordered[:quarter]))


def step_array(steps: Iterable[float] | np.ndarray) -> np.ndarray:
    """Steps as integers, or as floats where some are fractional: a log whose only step
    column is its epoch, counted in fractions (0.25, 0.5, ...), keeps them, where rounding
    down would give several points one step. The forecaster reads steps only relative to
    the window they span, so their unit does not matter."""
    given = np.asarray(steps)
    if given.dtype.kind in "iu":  # a trainer's or a trial's steps: integers already
        return given.astype(int, copy=False)
    as_float = given.astype(float)
    return as_float.astype(int) if np.array_equal(as_float, np.round(as_float)) else as_float


class History(Mapping[str, Any]):
    """A trial's series so far, ``{name: (steps, values)}``, and its hyperparameters."""

    def __init__(
        self, series: Mapping[str, SeriesArrays], hyperparameters: Mapping[str, float] | None = None
    ) -> None:
        self.series = {
            name: (step_array(steps), np.asarray(values, dtype=float))
            for name, (steps, values) in series.items()
        }
        self.hyperparameters = dict(hyperparameters) if hyperparameters is not None else None
        flat: dict[str, Any] = {}
        for name, (steps, values) in self.series.items():
            flat[name], flat[f"{name}_steps"] = values, steps
        if self.hyperparameters is not None:
            flat["hyperparameters"] = self.hyperparameters
        self._flat = flat

    # -- constructors ----------------------------------------------------------------

    @classmethod
    def from_curves(
        cls,
        curves: Curves,
        until: int | None = None,
        hyperparameters: Mapping[str, float] | None = None,
    ) -> History:
        """The series of a trainer's curves the forecaster reads, measured up to and at
        step ``until`` (default: everything)."""
        eval_steps = np.asarray(curves.eval_steps, dtype=int)
        series: dict[str, SeriesArrays] = {}
        for name in CURVE_GROUPS:
            values = np.asarray(getattr(curves, name), dtype=float)
            steps = eval_steps if name in EVALUATED_CURVES else np.arange(len(values))
            series[name] = (steps, values)
        history = cls(series, hyperparameters)
        return history if until is None else history.until(until)

    @classmethod
    def from_record(cls, record: RunRecord, until: int | None = None) -> History:
        """A corpus record's curves up to ``until``, with its recorded hyperparameters."""
        return cls.from_curves(record.curves, until, hyperparameters_from(record.config))

    @classmethod
    def from_points(
        cls, points: Mapping[str, Points], hyperparameters: Mapping[str, float] | None = None
    ) -> History:
        """Series from ``(step, value)`` pairs in any order; a step given twice keeps its
        last value (a trial retried from a checkpoint reports some steps again)."""
        series = {}
        for name, pairs in points.items():
            by_step = dict(pairs)
            if by_step:
                steps = sorted(by_step)
                series[name] = (np.asarray(steps), np.asarray([by_step[s] for s in steps]))
        return cls(series, hyperparameters)

    @classmethod
    def from_intermediate_values(
        cls,
        values: Mapping[int, float],
        series: str,
        until: int | None = None,
        hyperparameters: Mapping[str, float] | None = None,
    ) -> History:
        """An Optuna trial's intermediate values, read as the series ``series``."""
        history = cls.from_points({series: values.items()}, hyperparameters)
        return history if until is None else history.until(until)

    @classmethod
    def from_stored(
        cls,
        curves: Mapping[str, SeriesArrays],
        until: int | None = None,
        hyperparameters: Mapping[str, float] | None = None,
    ) -> History:
        """One trial's curves as :func:`~grokforecast.sweep.storage.read_curves` returns them."""
        history = cls({name: curves[name] for name in CURVE_GROUPS if name in curves}, hyperparameters)
        return history if until is None else history.until(until)

    # -- views -------------------------------------------------------------------------

    def until(self, step: float) -> History:
        """Every measurement taken at or before ``step``."""
        return History(
            {
                name: (steps[steps <= step], values[steps <= step])
                for name, (steps, values) in self.series.items()
            },
            self.hyperparameters,
        )

    def evaluated_only(self, times: int) -> History:
        """The history as a loop that evaluates ``times`` times by its newest step would
        have measured it (an epoch loop evaluates rarely): of each evaluated series, the
        measurements nearest ``times`` evenly spaced steps from 0 to the newest."""
        if times < 2:
            raise ValueError(f"times={times}: a history is evaluated at least twice (its start and now)")
        wanted = np.linspace(0, self.newest_step or 0, times)
        series = {}
        for name, (steps, values) in self.series.items():
            if name in EVALUATED_CURVES and len(steps):
                nearest = np.unique(np.abs(steps[:, None] - wanted[None, :]).argmin(axis=0))
                steps, values = steps[nearest], values[nearest]
            series[name] = (steps, values)
        return History(series, self.hyperparameters)

    def with_hyperparameters(self, hyperparameters: Mapping[str, float] | None) -> History:
        return History(self.series, hyperparameters)

    @property
    def newest_step(self) -> int | float | None:
        """The step of the latest measurement of any series (None when empty; a float
        only for a log counted in fractional epochs, :func:`step_array`)."""
        ends = [steps[-1].item() for steps, _ in self.series.values() if len(steps)]
        return max(ends) if ends else None

    def first_non_finite(self) -> tuple[str, int | float] | None:
        """The series and step of the earliest NaN or infinite value, if any."""
        found = []
        for name, (steps, values) in self.series.items():
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                found.append((steps[bad[0]].item(), name))
        if not found:
            return None
        step, name = min(found)
        return name, step

    # -- the mapping the forecaster reads ---------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._flat[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._flat)

    def __len__(self) -> int:
        return len(self._flat)

    def __repr__(self) -> str:
        lengths = ", ".join(f"{name}: {len(v)}" for name, (_, v) in self.series.items())
        return f"History({lengths}; hyperparameters={self.hyperparameters})"
