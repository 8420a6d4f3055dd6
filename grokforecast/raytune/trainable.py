"""The Ray Tune trainable of a sweep: one trial, reported every evaluation, checkpointed.

The same life as an Optuna trial (:mod:`grokforecast.sweep.trial`), with Tune in charge:
train in steps of ``eval_every``, report every curve to Tune after each (the scheduler
forecasts from them at the probe step and may stop the trial), write the dense curves to
the study database, checkpoint through Tune's checkpoint API every ``checkpoint_every``
steps, and end at ``full_steps``, when the grok threshold has held for ``hold_steps``, or
when the loss diverges. A trial Tune restarts resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from grokforecast.raytune.scheduler import INTERVAL_SUFFIX, TRIAL_NUMBER
from grokforecast.sweep.driver import SweepPlan
from grokforecast.sweep.storage import delete_curves, open_storage
from grokforecast.sweep.trial import CurveFlusher, held_threshold_since, outcome
from grokforecast.training import RunStatus, Trainer

CHECKPOINT_FILE = "trainer.pt"
#: Curves are written to the database about this often (steps), and at the probe step.
FLUSH_EVERY = 100


def train_trial(config: dict[str, Any], plan: SweepPlan) -> None:
    """Train the Tune trial ``config`` of the sweep ``plan`` (run inside a Ray worker)."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one line per checkpoint otherwise
    spec, budget = plan.spec, plan.spec.budget
    number = config[TRIAL_NUMBER]
    train_config = spec.train_config({k: v for k, v in config.items() if k != TRIAL_NUMBER})
    trainer = _start(train_config)
    resumed_from_step = trainer.step or None
    engine = open_storage(plan.storage_url).engine
    delete_curves(engine, spec.name, [number])  # a restarted trial writes its curves anew
    flusher = CurveFlusher(engine, spec.name, number)
    flushed_at = 0
    if trainer.step == 0:  # the evaluation before the first update is part of the curves
        trainer.run(until=0)
        tune.report(_metrics(trainer, 0, spec.objective))
    while True:
        reported_from = trainer.step
        status = trainer.run(until=min(train_config.steps, trainer.step + train_config.eval_every))
        metrics = _metrics(trainer, reported_from, spec.objective)
        stopped = _stop_reason(trainer, status, budget.hold_steps)
        if (
            stopped
            or trainer.step - flushed_at >= FLUSH_EVERY
            or reported_from < budget.probe_steps <= trainer.step
        ):
            flusher.flush(trainer)
            flushed_at = trainer.step
        if stopped:
            ending = {
                **outcome(trainer, stopped),
                "diverged_at": trainer.diverged_at,
                "resumed_from_step": resumed_from_step,
            }
            tune.report({**metrics, **ending})
            return
        if trainer.step % budget.checkpoint_every < train_config.eval_every:
            with tempfile.TemporaryDirectory() as directory:
                trainer.save(Path(directory) / CHECKPOINT_FILE)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)


def _start(train_config: Any) -> Trainer:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return Trainer(train_config)
    with checkpoint.as_directory() as directory:
        return Trainer.resume(Path(directory) / CHECKPOINT_FILE, train_config)


def _stop_reason(trainer: Trainer, status: RunStatus, hold_steps: int) -> str | None:
    if status is RunStatus.DIVERGED:
        return "diverged"
    if trainer.step >= trainer.config.steps:
        return "budget"
    since = held_threshold_since(trainer)
    if since is not None and trainer.step - since >= hold_steps:
        return "held"
    return None


def _metrics(trainer: Trainer, since: int, objective: str) -> dict[str, Any]:
    """The latest value of every curve, the dense training curves since ``since``, and
    the study's objective as of now (Tune checks that every result names it)."""
    curves = trainer.curves
    metrics: dict[str, Any] = {
        "step": trainer.step,
        "val_loss": curves.val_loss[-1],
        "val_acc": curves.val_acc[-1],
        "weight_norm": curves.weight_norm[-1],
    }
    if trainer.step > since:
        for name in ("train_loss", "train_acc"):
            values = getattr(curves, name)
            metrics[name], metrics[name + INTERVAL_SUFFIX] = values[-1], values[since:]
    current = {"final_val_acc": curves.val_acc[-1], "best_val_acc": max(curves.val_acc)}
    metrics[objective] = current.get(objective, curves.val_loss[-1])
    return metrics
