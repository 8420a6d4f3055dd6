"""The same study on the Optuna backend and on the Ray backend, timed in one run.

Each backend runs the study file on a fresh SQLite database in its own directory, in this
process (one Optuna worker; a local Ray runtime with one CPU per trial). Ray's start-up
(``ray.init`` of a local runtime) is timed separately and included in the Ray sweep time.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from grokforecast.launch import run_sweep
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.summary import summarize


@dataclass(frozen=True)
class BackendRun:
    backend: str
    seconds: float
    finished: int
    pruned: int
    grokked: int
    steps: int
    best_value: float | None
    #: The parameters of the trials that grokked, each as sorted (name, value) pairs: the
    #: same trials of two runs of one seeded sampler compare equal.
    grokked_params: frozenset[tuple[tuple[str, object], ...]] = frozenset()


def run_backend(spec_path: Path, workdir: Path, backend: str) -> BackendRun:
    """Run the study of ``spec_path`` on ``backend`` inside ``workdir``."""
    plan = SweepPlan.load(spec_path.resolve(), f"sqlite:///{workdir / 'study.db'}")
    with contextlib.chdir(workdir):
        started = time.perf_counter()
        study = run_sweep(plan, progress=False, backend=backend)
        seconds = time.perf_counter() - started
    summary = summarize(study, plan.spec.budget.full_steps)
    best = study.best_value if summary.complete else None
    trials = study.get_trials(deepcopy=False)
    grokked_params = frozenset(tuple(sorted(t.params.items())) for t in trials if t.user_attrs.get("grokked"))
    return BackendRun(
        backend,
        seconds,
        summary.finished,
        summary.pruned,
        summary.grokked,
        summary.steps_spent,
        best,
        grokked_params,
    )


def ray_startup_seconds() -> float:
    """Time to start (and stop) a local Ray runtime as the Ray backend starts it."""
    import ray

    from grokforecast.backends.ray.runner import connect

    started = time.perf_counter()
    connect()
    seconds = time.perf_counter() - started
    ray.shutdown()
    return seconds
