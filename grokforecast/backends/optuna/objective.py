"""The objective of an Optuna sweep: the trial lifecycle, hosted by an Optuna trial.

:class:`TrialRun` is what every worker's ``study.optimize`` calls. The life of the trial
is :class:`~grokforecast.sweep.lifecycle.TrialLifecycle`'s, shared with the Ray backend;
this module only says what Optuna does at its turns: the objective's series is reported
(:mod:`grokforecast.sweep.reporting`), the pruner is asked at the probe step (reading
every curve straight from the trainer), a retried trial continues from the checkpoint of
the trial it retries, and the outcome lands in the trial's user attributes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa

from grokforecast.backends.optuna.monitor import register_history_source
from grokforecast.core.decision import Decision, DecisionRecord
from grokforecast.history import History, hyperparameters_from
from grokforecast.sweep.lifecycle import Segments, TrialLifecycle
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.reporting import objective_series, reported_points
from grokforecast.sweep.study import FINISHED, suggest
from grokforecast.training import Trainer
from grokforecast.training.checkpoint import previous_of
from grokforecast.vocabulary import DECISION_ATTR, RESUMED_FROM_ATTR, STOPPED_ATTR, WORKER_ATTR

#: Steps between reports to Optuna after the probe, about: between them the lifecycle
#: checks the hold rule and checkpoints.
SEGMENT_STEPS = 100


def worker_identity() -> str:
    """``host:process id`` of this worker, recorded on each trial it runs: a container
    restarted after SIGTERM is the same host and process 1 again, and so finds the trial
    it was stopped in (:func:`~grokforecast.backends.optuna.workers.retry_interrupted`)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_of(trial: optuna.trial.FrozenTrial) -> tuple[str, int] | None:
    """The host and process id :func:`worker_identity` recorded on ``trial``, if any."""
    host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
    return (host, int(pid)) if host and pid.isdigit() else None


class TrainerHistory:
    """The pruner's view of a running trainer: every curve so far, and the hyperparameters."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.hyperparameters = hyperparameters_from(vars(trainer.config))

    @property
    def newest_step(self) -> int | None:
        return self.trainer.step

    def history(self, until: int | None = None) -> History:
        # The pruner asks right after a segment: everything recorded is what it has seen.
        return History.from_curves(self.trainer.curves, hyperparameters=self.hyperparameters)


class TrialRun:
    """The objective of a sweep: callable on an Optuna trial, returns the study's objective."""

    def __init__(self, plan: SweepPlan, engine: sa.Engine, segments: Segments | None = None) -> None:
        self.plan = plan
        self.engine = engine
        self.segments = segments

    def checkpoint_path(self, trial_number: int) -> Path:
        return self.plan.checkpoint_dir / f"trial-{trial_number}.pt"

    def remove_checkpoints(self, trial_numbers: list[int]) -> None:
        """Delete every checkpoint file of these trials (the newest, the one before it, a
        half-written one); quarantined ``.bad`` files stay for a look."""
        for number in trial_numbers:
            newest = self.checkpoint_path(number)
            for path in (newest, previous_of(newest), newest.with_name(newest.name + ".partial")):
                path.unlink(missing_ok=True)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna callback: a trial's checkpoints (and its predecessors') go once Optuna has
        recorded it finished, not before: a worker killed between the end of training and
        that record leaves a trial to retry, which needs them (unless ``keep_checkpoints``)."""
        if trial.state in FINISHED and not self.plan.spec.budget.keep_checkpoints:
            retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial)
            self.remove_checkpoints([trial.number, *retried])

    def __call__(self, trial: optuna.Trial) -> float:
        host = OptunaTrialHost(self, trial)
        return TrialLifecycle(
            self.plan, self.engine, trial.number, suggest(trial, self.plan.spec), host, self.segments
        ).run()


class OptunaTrialHost:
    """What an Optuna trial does at the lifecycle's turns
    (:class:`~grokforecast.sweep.lifecycle.TrialHost`)."""

    #: Curves are written at the probe, at checkpoints and at the end only.
    flush_every = None

    def __init__(self, run: TrialRun, trial: optuna.Trial) -> None:
        self.run, self.trial = run, trial
        pruner = run.plan.spec.pruner
        #: Optuna's MedianPruner judges validation accuracy after every segment; the
        #: HjorthPruner decides at the probe (and the later rungs), from every curve in memory.
        self.median = pruner.enabled and pruner.kind == "median"
        self._reported = 0
        self._source: TrainerHistory | None = None
        frozen = trial.study._storage.get_trial(trial._trial_id)  # read once: it never changes
        self._retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(frozen)

    def segment_steps(self, eval_every: int) -> int:
        return eval_every * max(1, round(SEGMENT_STEPS / eval_every))

    def predecessors(self) -> list[int]:
        return list(self._retried)

    def checkpoints(self) -> Iterator[tuple[Path, int]]:
        """The checkpoints of the trials this one retries, newest trial first, each with
        the one it replaced: a bad newest file falls back to the one before."""
        for number in reversed(self._retried):
            newest = self.run.checkpoint_path(number)
            for path in (newest, previous_of(newest)):
                if path.exists():
                    yield path, number

    def begin(self, trainer: Trainer, resumed_from: dict[str, int] | None) -> None:
        # Recorded now: an attempt killed later still says where it ran and started from.
        self.trial.set_user_attr(WORKER_ATTR, worker_identity())
        if resumed_from is not None:
            self.trial.set_user_attr(RESUMED_FROM_ATTR, resumed_from)
        self._source = TrainerHistory(trainer)  # held here: the registry keeps it weakly
        register_history_source(self.trial, self._source)

    def report(self, trainer: Trainer, since: int, judged: bool, checkpoint: bool) -> bool:
        self._catch_up(trainer)
        if (judged or (self.median and trainer.step > self.run.plan.spec.budget.probe_steps)) and (
            self.trial.should_prune()
        ):
            return True
        if checkpoint:
            trainer.save(self.run.checkpoint_path(self.trial.number), keep_previous=True)
        return False

    def end(self, trainer: Trainer, since: int, ending: dict[str, Any]) -> float:
        self._catch_up(trainer, last=True)
        for key, value in ending.items():
            if key != RESUMED_FROM_ATTR:  # recorded when the trial began
                self.trial.set_user_attr(key, value)
        stopped = ending[STOPPED_ATTR]
        if stopped == "diverged":
            record = DecisionRecord.diverged("train_loss", ending["diverged_at"])
            self.trial.set_user_attr(DECISION_ATTR, record.to_dict())
        elif stopped == "pruned" and self.median:  # the HjorthPruner records its own reason
            rule = f"MedianPruner: val acc below the earlier trials' median at step {trainer.step}"
            record = DecisionRecord.without_forecast(Decision.PRUNE, trainer.step, rule)
            self.trial.set_user_attr(DECISION_ATTR, record.to_dict())
        if stopped in ("pruned", "diverged"):
            raise optuna.TrialPruned(f"trial {self.trial.number} {stopped} at step {trainer.step}")
        # Every objective a study file may name is one of the recorded outcomes.
        return float(ending[self.run.plan.spec.objective])

    def _catch_up(self, trainer: Trainer, last: bool = False) -> None:
        """Report the evaluations Optuna has not seen, in the objective's units
        (:mod:`grokforecast.sweep.reporting`; the newest too when ``last``), under the
        MedianPruner every one (it compares trials evaluation by evaluation)."""
        curves, spec = trainer.curves, self.run.plan.spec
        every = 1 if self.median else spec.budget.report_every
        values = getattr(curves, objective_series(spec.objective))
        points = reported_points(
            curves.eval_steps, values, self._reported, every, spec.budget.judged_at, last
        )
        for step, value in points:
            self.trial.report(value, step)
        self._reported = len(curves.eval_steps)
