"""The life of one sweep trial, written once for both backends.

:meth:`TrialLifecycle.run`, top to bottom:

1. build the trial's TrainConfig from its sampled parameters (budget: ``full_steps``);
2. continue from the newest usable checkpoint the backend offers (a retried trial, a
   restarted Tune trial), else start fresh; a checkpoint that fails verification is
   moved aside (``.bad``) with a one-line warning and the next one tried; the curves it
   replaces are dropped from the study database, since the resumed trainer carries them all;
3. evaluate before the first update, then train in segments (alone, or in the worker's
   population: :class:`Segments`) whose ends always include the probe step, the later
   rungs (``[budget] rung_steps``) and the step at which a trial will have held the grok
   threshold for ``hold_steps``; after each segment hand
   the trainer to the backend's :class:`TrialHost`, which reports it (Optuna: the
   training loss at a stride; Ray: a result with every curve since the last) and may stop
   the trial there;
4. at the probe the backend's stopper decides (:mod:`grokforecast.core.policy`), and
   judges a kept trial again at each later rung; a kept trial is checkpointed at once,
   then every ``checkpoint_every`` steps, and keeps a few snapshots for a look inside
   later (:mod:`grokforecast.inside.snapshots`);
5. end at ``full_steps``, when validation accuracy has held the grok threshold for
   ``hold_steps`` (the rest of the budget is compute saved), when the stopper prunes it,
   or when its loss diverges (an outcome, recorded as pruned, not a crash to retry);
   asked to stop (Ctrl-C, SIGTERM: :mod:`grokforecast.sweep.shutdown`), it checkpoints at
   the end of the segment and raises there, to be resumed from that checkpoint;
6. record the outcome (:data:`~grokforecast.vocabulary.OUTCOME_KEYS`) and the dense
   curves in the study database, which are also written at the probe, at every
   checkpoint and, where the backend asks, every ``flush_every`` steps.

The probe step is ``[budget] probe_steps`` on both backends: the trial is judged once
it has trained that many updates (see :mod:`grokforecast.core.policy`), and likewise at
each of the ``rung_steps``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import sqlalchemy as sa

from grokforecast.errors import CheckpointError
from grokforecast.inside.snapshots import SnapshotSchedule, snapshot_folder
from grokforecast.sweep import shutdown
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.storage import delete_curves, write_curve_segment
from grokforecast.training import RunStatus, Trainer
from grokforecast.vocabulary import OUTCOME_KEYS, RESUMED_FROM_ATTR, STOPPED_ATTR

logger = logging.getLogger(__name__)


class Segments(Protocol):
    """Who trains a trial's segments: the trainer alone (:class:`TrainAlone`), or a
    population shared with the worker's other trials
    (:class:`~grokforecast.sweep.populations.SharedPopulation`)."""

    def enter(self) -> None:
        """A trial begins on the calling thread, before it builds its trainer."""
        ...

    def run(self, trainer: Trainer, until: int) -> RunStatus:
        """Train ``trainer`` to step ``until``, as ``trainer.run(until=until)`` does."""
        ...

    def leave(self, trainer: Trainer) -> None:
        """The trial of ``trainer`` has ended (or stopped): it trains no more here."""
        ...


class TrainAlone:
    """Each trial trains on its own (the default: one trial per process)."""

    def enter(self) -> None:
        pass

    def run(self, trainer: Trainer, until: int) -> RunStatus:
        return trainer.run(until=until)

    def leave(self, trainer: Trainer) -> None:
        pass


class TrialHost(Protocol):
    """What a backend does at the turns of a trial's life."""

    #: Steps after which the curves are written even between checkpoints (None: only at
    #: the probe, at checkpoints and at the end).
    flush_every: int | None

    def segment_steps(self, eval_every: int) -> int:
        """Steps between reports (the probe step always ends a segment)."""
        ...

    def predecessors(self) -> list[int]:
        """Numbers of the earlier trials whose run this trial continues (Optuna retries)."""
        ...

    def checkpoints(self) -> Iterator[tuple[Path, int]]:
        """Checkpoints to continue from, newest first, with the trial each belongs to."""
        ...

    def begin(self, trainer: Trainer, resumed_from: dict[str, int] | None) -> None:
        """The trainer is built (and resumed from ``resumed_from``, the trial and step, if it
        was); training starts next."""
        ...

    def report(self, trainer: Trainer, since: int, judged: bool, checkpoint: bool) -> bool:
        """Report the segment trained since step ``since``, which ends at a step the
        stopper judges when ``judged`` (the probe or a later rung); save a checkpoint when
        asked. Returns True when the backend's stopper ends the trial here."""
        ...

    def end(self, trainer: Trainer, since: int, ending: dict[str, Any]) -> float:
        """Record the trial's ending and return the objective (or raise, as Optuna's
        pruned trials do)."""
        ...


class CurveFlusher:
    """Writes the trainer's curves to the study database, each point once, in batches."""

    def __init__(self, engine: sa.Engine, study_name: str, trial_number: int) -> None:
        self.engine, self.study_name, self.trial_number = engine, study_name, trial_number
        self._train_done = 0
        self._eval_done = 0

    @property
    def flushed_to(self) -> int:
        return self._train_done

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
    """What a finished trial records (:data:`OUTCOME_KEYS`): why it stopped, steps, t2, t4,
    grokked, final metrics, and the step its loss diverged at."""
    summary = trainer.summary()
    curves = trainer.curves
    values = {
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
        "diverged_at": trainer.diverged_at,
    }
    return {key: values[key] for key in OUTCOME_KEYS}


class TrialLifecycle:
    """One trial of ``plan``, numbered ``trial_number``, with sampled ``params``, run by
    ``host`` (see the module's docstring for the steps)."""

    def __init__(
        self,
        plan: SweepPlan,
        engine: sa.Engine,
        trial_number: int,
        params: dict[str, Any],
        host: TrialHost,
        segments: Segments | None = None,
    ) -> None:
        self.plan, self.engine, self.trial_number, self.host = plan, engine, trial_number, host
        self.segments = segments or TrainAlone()
        self.config = plan.spec.train_config(params)

    def run(self) -> float:
        shutdown.raise_if_requested()  # asked to stop between trials: start none
        self.segments.enter()
        trainer, resumed_from = self._start()
        try:
            return self._train(trainer, resumed_from)
        finally:
            self.segments.leave(trainer)

    def _train(self, trainer: Trainer, resumed_from: dict[str, int] | None) -> float:
        budget, config, host = self.plan.spec.budget, self.config, self.host
        chain_first = [*host.predecessors(), self.trial_number][0]
        self.snapshots = SnapshotSchedule(
            snapshot_folder(self.plan.snapshot_dir, chain_first), config.steps, budget.snapshots, trainer
        )
        flusher = CurveFlusher(self.engine, self.plan.spec.name, self.trial_number)
        ending = {RESUMED_FROM_ATTR: resumed_from}
        host.begin(trainer, resumed_from)
        if trainer.step == 0:  # the evaluation before the first update is part of the curves
            self.segments.run(trainer, 0)
            host.report(trainer, since=0, judged=False, checkpoint=False)
        segment = host.segment_steps(config.eval_every)
        next_checkpoint = _next_multiple(trainer.step, budget.checkpoint_every)
        held = held_threshold_since(trainer)
        while True:
            since = trainer.step
            ends = [*budget.judged_at, *([] if held is None else [held + budget.hold_steps])]
            until = min([config.steps, since + segment, *(step for step in ends if step > since)])
            status = self.segments.run(trainer, until)
            if status is RunStatus.DIVERGED:
                return self._end(trainer, flusher, since, "diverged", ending)
            if trainer.step >= config.steps:
                return self._end(trainer, flusher, since, "budget", ending)
            at_probe = since < budget.probe_steps <= trainer.step
            stopping = shutdown.requested() is not None
            checkpoint = at_probe or stopping or trainer.step >= next_checkpoint
            due = host.flush_every is not None and trainer.step - flusher.flushed_to >= host.flush_every
            if at_probe or checkpoint or due:
                flusher.flush(trainer)
            judged = any(since < step <= trainer.step for step in budget.judged_at)
            if host.report(trainer, since, judged, checkpoint):
                return self._end(trainer, flusher, trainer.step, "pruned", ending)
            self.snapshots.after_segment(trainer, at_probe)
            shutdown.raise_if_requested()
            if checkpoint:
                next_checkpoint = _next_multiple(trainer.step, budget.checkpoint_every)
            held = held_threshold_since(trainer)
            if held is not None and trainer.step - held >= budget.hold_steps:
                return self._end(trainer, flusher, trainer.step, "held", ending)

    def _start(self) -> tuple[Trainer, dict[str, int] | None]:
        """The trainer, continued from the newest usable checkpoint, and where from."""
        delete_curves(self.engine, self.plan.spec.name, [self.trial_number, *self.host.predecessors()])
        for path, number in self.host.checkpoints():
            try:
                trainer = Trainer.resume(path, self.config)
            except CheckpointError as error:
                quarantined = path.with_name(path.name + ".bad")
                path.replace(quarantined)  # kept for a look, never read again
                logger.warning("trial %d: %s; moved to %s", self.trial_number, error, quarantined.name)
                continue
            logger.info("trial %d continues trial %d from step %d", self.trial_number, number, trainer.step)
            return trainer, {"trial": number, "step": trainer.step}
        return Trainer(self.config), None

    def _end(
        self, trainer: Trainer, flusher: CurveFlusher, since: int, stopped: str, ending: dict[str, Any]
    ) -> float:
        flusher.flush(trainer)
        if stopped in ("budget", "held"):  # a run that went its way to the end: its last look
            self.snapshots.save(trainer)
        return self.host.end(trainer, since, {**outcome(trainer, stopped), **ending})


def _next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step``."""
    return (step // every + 1) * every
