"""The views of one trial's snapshots, computed once per snapshot file and cached.

The cache is ``views.json`` in the trial's snapshot folder: a snapshot's views are
computed again only when its file changes (size or modification time), so that
``grokforecast inspect``, the report and the dashboard read them in milliseconds.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import optuna

from grokforecast.errors import GrokforecastError
from grokforecast.inside.snapshot_views import SnapshotViews, views_of
from grokforecast.inside.snapshots import snapshot_files, snapshot_folder
from grokforecast.sweep.plan import SweepPlan
from grokforecast.training import Trainer

CACHE_FILE = "views.json"
logger = logging.getLogger(__name__)


def chain_first(trial: optuna.trial.FrozenTrial) -> int:
    """The first trial of the retry chain ``trial`` ends (its snapshots' folder)."""
    return [*trial.system_attrs.get("retry_history", []), trial.number][0]


def snapshot_folder_of(plan: SweepPlan, trial: optuna.trial.FrozenTrial) -> Path:
    return snapshot_folder(plan.snapshot_dir, chain_first(trial))


def cached_views(folder: Path) -> list[SnapshotViews]:
    """The views already computed for the snapshots in ``folder`` that are still current."""
    cache = _read_cache(folder)
    return [
        SnapshotViews.from_dict(cache[path.name]["views"])
        for _, path in snapshot_files(folder)
        if _current(cache.get(path.name), path)
    ]


def trial_views(plan: SweepPlan, trial: optuna.trial.FrozenTrial) -> tuple[list[SnapshotViews], int]:
    """The views of every snapshot of ``trial``, computing the missing ones; returns them
    by step and how many were computed now."""
    folder = snapshot_folder_of(plan, trial)
    files = snapshot_files(folder)
    if not files:
        raise GrokforecastError(
            f"trial {trial.number} has no snapshots in {folder}: only kept trials keep them, and only "
            "with [budget] snapshots > 0 in the study file (the default, 4, keeps four)"
        )
    cache = _read_cache(folder)
    config = plan.spec.train_config(trial.params)
    initial = None
    computed = 0
    for _, path in files:
        if _current(cache.get(path.name), path):
            continue
        if initial is None:
            initial = Trainer(config).model  # the seeded initialization, rebuilt
        views = views_of(Trainer.resume(path, config), initial)
        cache[path.name] = {**_stamp(path), "views": views.to_dict()}
        computed += 1
    if computed:
        _write_cache(folder, cache)
    return [SnapshotViews.from_dict(cache[path.name]["views"]) for _, path in files], computed


def _stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _current(entry: dict[str, Any] | None, path: Path) -> bool:
    return entry is not None and {k: entry.get(k) for k in ("size", "mtime_ns")} == _stamp(path)


def _read_cache(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: computed again


def _write_cache(folder: Path, cache: dict[str, Any]) -> None:
    partial = folder / (CACHE_FILE + ".partial")
    try:
        partial.write_text(json.dumps(cache))
        os.replace(partial, folder / CACHE_FILE)
    except OSError as error:  # a read-only folder: the views are computed again next time
        logger.warning("views not cached in %s: %s", folder, error)


def views_to_show(plan: SweepPlan, study: optuna.Study) -> dict[str, tuple[int, list[SnapshotViews]]]:
    """The views of a grokking and of a kept but non-grokking trial that kept snapshots
    (the best of each by the objective, as the report and the dashboard highlight them),
    by caption: ``{caption: (trial number, views)}``. Trials without snapshots are skipped."""
    from grokforecast.sweep.study import FINISHED
    from grokforecast.vocabulary import GROKKED_ATTR

    finished = [t for t in study.get_trials(deepcopy=False, states=FINISHED) if t.value is not None]
    finished.sort(key=lambda t: t.value, reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
    shown: dict[str, tuple[int, list[SnapshotViews]]] = {}
    for caption, grokked in (("a grokking trial", True), ("a kept trial that did not grok", False)):
        for trial in finished:
            if (trial.user_attrs.get(GROKKED_ATTR) is True) != grokked:
                continue
            if not snapshot_files(snapshot_folder_of(plan, trial)):
                continue
            try:
                shown[caption] = (trial.number, trial_views(plan, trial)[0])
            except GrokforecastError as error:  # a bad snapshot: named, and the next trial tried
                logger.warning("trial %d: %s", trial.number, error)
                continue
            break
    return shown
