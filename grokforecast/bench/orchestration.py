"""What the sweep machinery costs: a sweep's wall time against the same trainings bare.

The sweep runs on a fresh SQLite database with one worker (in this process, as
``grokforecast sweep`` does); afterwards every finished trial's configuration is trained
again for exactly the steps it trained in the sweep, in a plain ``Trainer.run`` loop with
no Optuna, no storage, no forecasts and no checkpoints. The ratio of the two times is the
orchestration overhead (target <= 1.05). A few warm-up steps first pay the one-time
imports both sides need (torch's optimizer machinery); the forecaster's loading counts
against the sweep.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from optuna.trial import TrialState

from grokforecast.launch import run_sweep
from grokforecast.sweep.plan import SweepPlan
from grokforecast.training import Trainer


@dataclass(frozen=True)
class OrchestrationResult:
    trials: int
    steps: int
    sweep_seconds: float
    bare_seconds: float

    @property
    def ratio(self) -> float:
        return self.sweep_seconds / self.bare_seconds


def measure_orchestration(spec_path: Path, workdir: Path) -> OrchestrationResult:
    """Run the study file's sweep in ``workdir`` (its own database), then the bare loop."""
    spec_path = spec_path.resolve()
    plan = SweepPlan.load(spec_path, f"sqlite:///{workdir / 'orchestration.db'}")
    Trainer(plan.spec.train_config({})).run(until=5)  # one-time imports, paid by both sides
    with contextlib.chdir(workdir):  # the workers' checkpoints land under workdir/runs
        started = time.perf_counter()
        study = run_sweep(plan, n_workers=1, progress=False)
        sweep_seconds = time.perf_counter() - started
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    started = time.perf_counter()
    for trial in finished:
        trainer = Trainer(plan.spec.train_config(trial.params))
        trainer.run(until=trial.user_attrs["steps_trained"])
    bare_seconds = time.perf_counter() - started
    steps = sum(t.user_attrs["steps_trained"] for t in finished)
    return OrchestrationResult(len(finished), steps, sweep_seconds, bare_seconds)
