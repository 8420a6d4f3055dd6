"""The Ray Tune trainable of a sweep: the trial lifecycle, hosted by a Tune trial.

The life is :class:`~grokforecast.sweep.lifecycle.TrialLifecycle`'s, shared with the
Optuna backend; with Tune in charge, the trial reports every curve after each evaluation
(the scheduler forecasts from them at the probe step and may stop the trial), checkpoints
through Tune's checkpoint API, and resumes from its last checkpoint when Tune restarts it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray import tune

from grokforecast.sweep.lifecycle import TrialLifecycle
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.storage import open_storage
from grokforecast.training import Trainer
from grokforecast.vocabulary import INTERVAL_SUFFIX, RESUMED_FROM_ATTR, TRIAL_NUMBER

CHECKPOINT_FILE = "trainer.pt"


def train_trial(config: dict[str, Any], plan: SweepPlan) -> None:
    """Train the Tune trial ``config`` of the sweep ``plan`` (run inside a Ray worker)."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one line per checkpoint otherwise
    number = config[TRIAL_NUMBER]
    params = {k: v for k, v in config.items() if k != TRIAL_NUMBER}
    engine = open_storage(plan.storage_url).engine
    TrialLifecycle(plan, engine, number, params, TuneTrialHost(number, plan.spec.objective)).run()


class TuneTrialHost:
    """What a Tune trial does at the lifecycle's turns (:class:`~grokforecast.sweep.lifecycle.TrialHost`)."""

    #: A restarted Tune trial rewrites its curves: written about this often (steps).
    flush_every = 100

    def __init__(self, number: int, objective: str) -> None:
        self.number, self.objective = number, objective

    def segment_steps(self, eval_every: int) -> int:
        return eval_every  # every evaluation is a result: the scheduler reads them all

    def predecessors(self) -> list[int]:
        return []  # Tune restarts the same trial

    def checkpoints(self) -> Iterator[tuple[Path, int]]:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                yield Path(directory) / CHECKPOINT_FILE, self.number

    def begin(self, trainer: Trainer, resumed_from: dict[str, int] | None) -> None:
        pass  # where it resumed from goes with the last result (Tune's results are its record)

    def report(self, trainer: Trainer, since: int, judged: bool, checkpoint: bool) -> bool:
        metrics = self._metrics(trainer, since)
        if not checkpoint:
            tune.report(metrics)
            return False
        with tempfile.TemporaryDirectory() as directory:
            trainer.save(Path(directory) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        return False  # a trial the scheduler stops is ended by Tune

    def end(self, trainer: Trainer, since: int, ending: dict[str, Any]) -> float:
        # Tune flattens nested results: where it resumed from goes as two numbers.
        outcome = {key: value for key, value in ending.items() if key != RESUMED_FROM_ATTR}
        resumed = {f"{RESUMED_FROM_ATTR}_{key}": v for key, v in (ending[RESUMED_FROM_ATTR] or {}).items()}
        tune.report({**self._metrics(trainer, since), **outcome, **resumed})
        return float(ending[self.objective])

    def _metrics(self, trainer: Trainer, since: int) -> dict[str, Any]:
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
        metrics[self.objective] = current.get(self.objective, curves.val_loss[-1])
        return metrics
