"""One trial of a sweep: probe, forecast, then stop or continue the same run to full length.

The life of a trial, top to bottom in :meth:`TrialRun.__call__`:

1. sample the search space, build the TrainConfig (budget: ``full_steps``);
2. if the trial retries one that died (a killed worker, Ctrl-C), continue from the newest
   checkpoint among the trials it retries, else start fresh;
3. train to ``probe_steps``, reporting the training loss to Optuna at a stride;
4. ask the pruner once (it reads every curve straight from the trainer) and stop there
   when the forecast says the trial will not grok;
5. otherwise continue the same run, checkpointing every ``checkpoint_every`` steps,
   until ``full_steps`` or until validation accuracy has held the grok threshold for
   ``hold_steps`` (the rest of the budget is compute saved);
6. record t2, t4, grokked, final metrics and steps trained as user attributes, and the
   dense curves in the study database.

A run whose loss turns NaN or infinite is stopped and recorded as PRUNED, with the step
in its decision: a diverged configuration is an outcome, not a crash to retry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy as sa

from grokforecast.errors import CheckpointError
from grokforecast.pruning.decision import DECISION_ATTR
from grokforecast.pruning.monitor import register_history_source
from grokforecast.sweep.spec import INT_SETTINGS, Choices, StudySpec
from grokforecast.sweep.storage import delete_curves, write_curve_segment
from grokforecast.training import RunStatus, TrainConfig, Trainer

logger = logging.getLogger(__name__)

#: User attribute naming why a trial stopped: pruned, diverged, held, budget.
STOPPED_ATTR = "stopped"


def suggest(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """Sample every setting of the study's search space."""
    params: dict[str, Any] = {}
    for name, dist in spec.search.items():
        if isinstance(dist, Choices):
            params[name] = trial.suggest_categorical(name, dist.choices)
        elif name in INT_SETTINGS:
            step = int(dist.step or 1)
            params[name] = trial.suggest_int(name, int(dist.low), int(dist.high), step=step, log=dist.log)
        else:
            params[name] = trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return params


class TrainerHistory:
    """The pruner's view of a running trainer: every curve so far, and the hyperparameters."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def history(self, until: int | None = None) -> dict[str, Any]:
        # The pruner asks right after the probe: everything recorded is what it has seen.
        config = self.trainer.config
        history: dict[str, Any] = self.trainer.curves.as_history()
        history["hyperparameters"] = {
            "lr": config.lr,
            "weight_decay": config.weight_decay,
            "data_fraction": config.data_fraction,
        }
        return history


class CurveFlusher:
    """Writes the trainer's curves to the study database, each point once, in batches."""

    def __init__(self, engine: sa.Engine, study_name: str, trial_number: int) -> None:
        self.engine, self.study_name, self.trial_number = engine, study_name, trial_number
        self._train_done = 0
        self._eval_done = 0

    def flush(self, trainer: Trainer) -> None:
        curves = trainer.curves
        steps = np.arange(self._train_done, curves.steps)
        eval_steps = np.asarray(curves.eval_steps[self._eval_done :])
        segment = {
            "train_loss": (steps, np.asarray(curves.train_loss[self._train_done :])),
            "train_acc": (steps, np.asarray(curves.train_acc[self._train_done :])),
        }
        for name in ("val_loss", "val_acc", "weight_norm", "train_set_acc"):
            values = getattr(curves, name)[self._eval_done :]
            if values:
                segment[name] = (eval_steps, np.asarray(values))
        write_curve_segment(self.engine, self.study_name, self.trial_number, segment)
        self._train_done, self._eval_done = curves.steps, len(curves.eval_steps)


def held_threshold_since(trainer: Trainer) -> int | None:
    """First step of the current unbroken run of evaluations at or above the grok threshold."""
    curves, threshold = trainer.curves, trainer.config.grok_threshold
    since = None
    for step, accuracy in zip(reversed(curves.eval_steps), reversed(curves.val_acc), strict=True):
        if accuracy < threshold:
            break
        since = step
    return since


def outcome(trainer: Trainer, stopped: str) -> dict[str, Any]:
    """What a finished trial records: why it stopped, steps, t2, t4, grokked, final metrics."""
    summary = trainer.summary()
    curves = trainer.curves
    return {
        STOPPED_ATTR: stopped,
        "steps_trained": trainer.step,
        "t2": summary["t2"],
        "t4": summary["t4"],
        "grokked": summary["grokked"],
        "final_train_acc": summary["final_train_acc"],
        "final_val_acc": summary["final_val_acc"],
        "best_val_acc": max(curves.val_acc) if curves.val_acc else None,
        "final_val_loss": curves.val_loss[-1] if curves.val_loss else None,
        "final_weight_norm": summary["final_weight_norm"],
    }


class TrialRun:
    """The objective of a sweep: callable on an Optuna trial, returns the study's objective."""

    def __init__(self, spec: StudySpec, engine: sa.Engine, checkpoint_dir: Path) -> None:
        self.spec = spec
        self.engine = engine
        self.checkpoint_dir = checkpoint_dir
        eval_every = int(spec.train.get("eval_every", TrainConfig.eval_every))
        # Train in chunks of about 100 steps, aligned with evaluations: between chunks the
        # driver reports, checks the hold rule and checkpoints.
        self.chunk = eval_every * max(1, round(100 / eval_every))
        # The HjorthPruner decides once, at the probe, from the training loss (and the rest
        # of the curves in memory); a MedianPruner judges validation accuracy at every chunk.
        self.prunes_on_val_acc = spec.pruner.enabled and spec.pruner.kind == "median"

    def checkpoint_path(self, trial_number: int) -> Path:
        return self.checkpoint_dir / f"trial-{trial_number}.pt"

    def __call__(self, trial: optuna.Trial) -> float:
        budget = self.spec.budget
        config = self.spec.train_config(suggest(trial, self.spec))
        trainer = self._start(trial, config)
        source = TrainerHistory(trainer)  # kept alive for the pruner while the trial runs
        register_history_source(trial, source)
        flusher = CurveFlusher(self.engine, trial.study.study_name, trial.number)
        reported = _ValAccReporter(trial) if self.prunes_on_val_acc else _Reporter(trial, budget.report_every)

        if trainer.step < budget.probe_steps:
            if trainer.run(until=budget.probe_steps) is RunStatus.DIVERGED:
                return self._diverged(trial, trainer, flusher)
            reported.catch_up(trainer, last=True)
            if trial.should_prune():
                return self._pruned(trial, trainer, flusher)
            self._checkpoint(trial, trainer, flusher)
        else:
            reported.catch_up(trainer)

        next_checkpoint = _next_multiple(trainer.step, budget.checkpoint_every)
        while trainer.step < config.steps:
            status = trainer.run(until=min(config.steps, trainer.step + self.chunk))
            if status is RunStatus.DIVERGED:
                return self._diverged(trial, trainer, flusher)
            reported.catch_up(trainer)
            if self.prunes_on_val_acc and trainer.step < config.steps and trial.should_prune():
                return self._pruned(trial, trainer, flusher)
            since = held_threshold_since(trainer)
            if (
                since is not None
                and trainer.step - since >= budget.hold_steps
                and trainer.step < config.steps
            ):
                return self._finish(trial, trainer, flusher, "held")
            if next_checkpoint <= trainer.step < config.steps:
                self._checkpoint(trial, trainer, flusher)
                next_checkpoint = _next_multiple(trainer.step, budget.checkpoint_every)
        return self._finish(trial, trainer, flusher, "budget")

    # -- starting and resuming ------------------------------------------------------------

    def _start(self, trial: optuna.Trial, config: TrainConfig) -> Trainer:
        frozen = trial.study._storage.get_trial(trial._trial_id)
        ancestors = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(frozen)
        for number in reversed(ancestors):
            path = self.checkpoint_path(number)
            if not path.exists():
                continue
            try:
                trainer = Trainer.resume(path, config)
            except CheckpointError as error:
                logger.warning("trial %d: not resuming from %s: %s", trial.number, path, error)
                continue
            delete_curves(self.engine, trial.study.study_name, ancestors)
            trial.set_user_attr("resumed_from", {"trial": number, "step": trainer.step})
            logger.info("trial %d continues trial %d from step %d", trial.number, number, trainer.step)
            return trainer
        if ancestors:
            delete_curves(self.engine, trial.study.study_name, ancestors)
        return Trainer(config)

    def _checkpoint(self, trial: optuna.Trial, trainer: Trainer, flusher: CurveFlusher) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        trainer.save(self.checkpoint_path(trial.number))
        flusher.flush(trainer)

    # -- endings -------------------------------------------------------------------------

    def _record(
        self, trial: optuna.Trial, trainer: Trainer, flusher: CurveFlusher, stopped: str
    ) -> dict[str, Any]:
        """Store the trial's outcome as user attributes (and its curves); return them."""
        flusher.flush(trainer)
        attrs = outcome(trainer, stopped)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        self.checkpoint_path(trial.number).unlink(missing_ok=True)
        return attrs

    def _stop(self, trial: optuna.Trial, trainer: Trainer, flusher: CurveFlusher, stopped: str) -> float:
        self._record(trial, trainer, flusher, stopped)
        raise optuna.TrialPruned(f"trial {trial.number} {stopped} at step {trainer.step}")

    def _pruned(self, trial: optuna.Trial, trainer: Trainer, flusher: CurveFlusher) -> float:
        if self.prunes_on_val_acc:  # the HjorthPruner records its own reason
            step = trainer.step
            trial.set_user_attr(
                DECISION_ATTR,
                {
                    "decision": "prune",
                    "step": step,
                    "reason": f"MedianPruner: val acc below the earlier trials' median at step {step}",
                },
            )
        return self._stop(trial, trainer, flusher, "pruned")

    def _diverged(self, trial: optuna.Trial, trainer: Trainer, flusher: CurveFlusher) -> float:
        step = trainer.diverged_at
        trial.set_user_attr("diverged_at", step)
        trial.set_user_attr(
            DECISION_ATTR,
            {
                "decision": "prune",
                "step": step,
                "reason": f"diverged: non-finite training loss at step {step}",
            },
        )
        return self._stop(trial, trainer, flusher, "diverged")

    def _finish(self, trial: optuna.Trial, trainer: Trainer, flusher: CurveFlusher, stopped: str) -> float:
        # Every objective a study file may name is one of the recorded outcomes.
        return float(self._record(trial, trainer, flusher, stopped)[self.spec.objective])


class _Reporter:
    """Reports every ``every``-th training loss to Optuna, each step once."""

    def __init__(self, trial: optuna.Trial, every: int) -> None:
        self.trial, self.every = trial, every
        self.next_step = 0

    def catch_up(self, trainer: Trainer, last: bool = False) -> None:
        losses = trainer.curves.train_loss
        for step in range(self.next_step, len(losses)):
            if step % self.every == 0 or (last and step == len(losses) - 1):
                self.trial.report(float(losses[step]), step)
        self.next_step = len(losses)


class _ValAccReporter:
    """Reports every validation accuracy to Optuna, each evaluation once (for Optuna's pruners)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.reported = 0

    def catch_up(self, trainer: Trainer, last: bool = False) -> None:
        """Report the evaluations since the last call (``last`` changes nothing: all are)."""
        curves = trainer.curves
        for step, value in zip(
            curves.eval_steps[self.reported :], curves.val_acc[self.reported :], strict=True
        ):
            self.trial.report(float(value), int(step))
        self.reported = len(curves.eval_steps)


def _next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step``."""
    return (step // every + 1) * every
