"""``Monitor``: buffer a trial's per-step metrics in memory, report to Optuna at a stride.

Writing every step to an RDB storage costs ~1-20 ms per value; a Monitor keeps the dense
curves in the process, reports only every ``report_every``-th value of one series to
Optuna, and lets the :class:`HjorthPruner` running in the same process read the other
series (validation loss, weight norm, ...) straight from its buffer: nothing is
rewritten to storage as the curves grow.
"""

from __future__ import annotations

import threading
import weakref
from collections import defaultdict
from typing import Protocol

import optuna

from grokforecast.history import History


class HistorySource(Protocol):
    """Anything that can hand the pruner a trial's curves so far (a Monitor, a trainer)."""

    @property
    def newest_step(self) -> int | None:
        """The step of the latest measurement held (None before any)."""
        ...

    def history(self, until: int | None = None) -> History: ...


_ACTIVE: weakref.WeakValueDictionary[tuple[str, int], HistorySource] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def register_history_source(trial: optuna.Trial, source: HistorySource) -> None:
    """Let a pruner in this process read ``source``'s curves for ``trial``.

    Held weakly: the registration ends when the objective drops the source.
    """
    with _LOCK:
        _ACTIVE[(trial.study.study_name, trial.number)] = source


def active_history_source(study_name: str, trial_number: int) -> HistorySource | None:
    """The history source an objective in this process registered for the trial, if any."""
    with _LOCK:
        return _ACTIVE.get((study_name, trial_number))


class Monitor:
    """Collects a trial's curves and reports one of them to Optuna at a stride.

    Example:

        >>> import math
        >>> import optuna
        >>> from grokforecast import HjorthPruner, Monitor
        >>> def objective(trial):
        ...     wd = trial.suggest_float("weight_decay", 0.1, 3.0, log=True)
        ...     monitor = Monitor(trial, report_every=5)
        ...     for step in range(300):
        ...         loss = math.exp(-step / 40) * (1 + 0.05 * math.sin(step)) + 1e-3
        ...         monitor.log(step, train_loss=loss, train_acc=min(1.0, step / 50))
        ...         if step % 10 == 0:
        ...             monitor.log(step, val_loss=2 - step / 300 * wd / 3, val_acc=step / 300 * wd / 3,
        ...                         weight_norm=50 * math.exp(-wd * step / 3000))
        ...         if monitor.should_prune():
        ...             raise optuna.TrialPruned()
        ...     return step / 300 * wd / 3
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> study = optuna.create_study(direction="maximize", pruner=HjorthPruner(probe_step=100))
        >>> study.optimize(objective, n_trials=3)
        >>> sorted(study.trials[0].intermediate_values)[:4]  # train_loss, every 5th step
        [0, 5, 10, 15]
        >>> study.trials[0].system_attrs["grokforecast:probe"]["forecaster"]  # every curve seen
        'full'

    Args:
        trial:
            The trial of the running objective.
        report_every:
            Report every ``report_every``-th step of ``series`` to Optuna (``trial.report``);
            :meth:`should_prune` asks the pruner only at those steps.
        series:
            The series reported as the trial's intermediate values.
    """

    def __init__(self, trial: optuna.Trial, report_every: int = 10, series: str = "train_loss") -> None:
        if report_every < 1:
            raise ValueError(f"report_every={report_every} must be at least 1")
        self.trial = trial
        self.report_every = report_every
        self.series = series
        self._steps: dict[str, list[int]] = defaultdict(list)
        self._values: dict[str, list[float]] = defaultdict(list)
        self._last_reported: int | None = None
        self._newest: int | None = None
        register_history_source(trial, self)

    def log(self, step: int, **metrics: float) -> None:
        """Record metrics at ``step``; report ``series`` to Optuna on the stride."""
        for name, value in metrics.items():
            self._steps[name].append(step)
            self._values[name].append(float(value))
        self._newest = step if self._newest is None else max(self._newest, step)
        if self.series in metrics and step % self.report_every == 0:
            self.trial.report(float(metrics[self.series]), step)
            self._last_reported = step

    def should_prune(self) -> bool:
        """Ask the pruner, only right after a report (no storage read otherwise)."""
        if self._last_reported is None:
            return False
        self._last_reported = None
        return self.trial.should_prune()

    @property
    def newest_step(self) -> int | None:
        return self._newest

    def history(self, until: int | None = None) -> History:
        """The buffered curves, cut at step ``until``."""
        points = {name: zip(steps, self._values[name], strict=True) for name, steps in self._steps.items()}
        history = History.from_points(points)
        return history if until is None else history.until(until)
