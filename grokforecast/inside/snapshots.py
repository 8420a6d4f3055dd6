"""Snapshots: a few checkpoints a kept trial keeps across its run, to look inside it later.

A trial's ordinary checkpoint is overwritten every ``checkpoint_every`` steps and removed
when the trial ends; the views of :mod:`grokforecast.inside.views` need the weights at
the moments that tell the story. A kept trial (never one pruned at its probe) saves a
snapshot at its probe step, at the first evaluation where its validation accuracy
reaches the grok threshold, and at each ``k / snapshots`` of its budget, the last one
at its end: at most ``snapshots + 2`` files per trial, in
``<snapshot dir>/trial-<N>/step-<S>.pt``, where ``N`` is the first trial of a retry chain
(a retried trial adds to its chain's folder).
"""

from __future__ import annotations

import re
from pathlib import Path

from grokforecast.training import Trainer

_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def snapshot_folder(snapshot_dir: Path, chain_first: int) -> Path:
    return snapshot_dir / f"trial-{chain_first}"


def snapshot_files(folder: Path) -> list[tuple[int, Path]]:
    """The snapshots in ``folder``, by step."""
    if not folder.is_dir():
        return []
    found = [(int(m[1]), path) for path in folder.iterdir() if (m := _STEP_FILE.match(path.name))]
    return sorted(found)


class SnapshotSchedule:
    """When a trial saves a snapshot (see the module), from wherever it starts or resumes."""

    def __init__(self, folder: Path, full_steps: int, count: int, trainer: Trainer) -> None:
        self.folder = folder
        self.marks = (
            sorted({max(1, round(full_steps * k / count)) for k in range(1, count + 1)}) if count else []
        )
        self.enabled = count > 0
        self._next = sum(mark <= trainer.step for mark in self.marks)
        self._val_acc_seen = 0
        self._grokked = self._grokked_since_last_look(trainer)

    def after_segment(self, trainer: Trainer, at_probe: bool) -> None:
        """Save a snapshot of a trial the stopper kept, if this segment end is due one."""
        if not self.enabled:
            return
        due = at_probe
        if not self._grokked and self._grokked_since_last_look(trainer):
            self._grokked = due = True
        while self._next < len(self.marks) and trainer.step >= self.marks[self._next]:
            self._next += 1
            due = True
        if due:
            self.save(trainer)

    def save(self, trainer: Trainer) -> None:
        path = self.folder / f"step-{trainer.step}.pt"
        if self.enabled and not path.exists():
            trainer.save(path)

    def _grokked_since_last_look(self, trainer: Trainer) -> bool:
        """Whether an evaluation since the last look reached the grok threshold: each is
        read once, not the whole curve at every segment end."""
        new = trainer.curves.val_acc[self._val_acc_seen :]
        self._val_acc_seen += len(new)
        return any(accuracy >= trainer.config.grok_threshold for accuracy in new)
