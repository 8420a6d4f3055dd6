"""A fault campaign: a sweep SIGKILLed again and again at random moments, then resumed.

What a cluster does to a sweep all the time (preemption, the OOM killer, a lost node):
each round starts ``grokforecast resume`` with ``workers`` processes and, once a trial is
training, a random moment later SIGKILLs either the whole sweep (parent and workers) or
one worker. Then the study is
resumed until it reports done, and read back: trials finished against the target, left
RUNNING, run twice with the same parameters, curves with a step missing or doubled, and
how many trials were interrupted and how many continued from a checkpoint.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.storage import open_storage, read_curves
from grokforecast.sweep.study import FINISHED

#: Seconds after the round's first trial started at which the kill falls: before, at or
#: after the probe, in the checkpointed long runs of kept trials.
KILL_AFTER_SECONDS = (1.0, 10.0)
#: Longest wait for a round's first trial (the workers import torch first).
START_TIMEOUT_SECONDS = 120.0
RESUMES_TO_FINISH = 3


@dataclass(frozen=True)
class FaultReport:
    kills: int
    worker_kills: int
    target: int
    finished: int
    running: int
    repeated: int
    curve_faults: int
    interrupted: int
    continued: int

    @property
    def intact(self) -> bool:
        """The study ended as if nothing had happened."""
        return (self.finished, self.running, self.repeated, self.curve_faults) == (self.target, 0, 0, 0)


def run_campaign(plan: SweepPlan, workers: int, kills: int, seed: int = 0) -> FaultReport:
    """Kill ``kills`` rounds of the sweep of ``plan`` (its study created), resume it to the
    end, and report (see the module)."""
    rng = random.Random(seed)
    command = [*_grokforecast(), "resume", str(plan.spec_path), "--storage", plan.storage_url]
    command += ["--workers", str(workers)]
    made = worker_kills = 0
    for _ in range(kills):
        sweep = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=plan.spec_path.parent,  # checkpoints under the study file's folder
        )
        _wait_for_a_running_trial(plan, sweep)
        time.sleep(rng.uniform(*KILL_AFTER_SECONDS))
        children = child_processes(sweep.pid)
        try:
            if children and rng.random() < 0.5:
                os.kill(rng.choice(children), signal.SIGKILL)  # one worker: the others go on
                worker_kills += 1
            else:
                os.killpg(sweep.pid, signal.SIGKILL)  # the parent and its workers at once
            made += 1
        except ProcessLookupError:
            pass  # the round finished the study first: nothing left to kill
        sweep.wait(timeout=900)
    for _ in range(RESUMES_TO_FINISH):
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=1800, cwd=plan.spec_path.parent
        )
        if done.returncode == 0:
            break
    else:
        raise RuntimeError(f"the study did not finish after {RESUMES_TO_FINISH} resumes: {done.stderr}")
    return _read_back(plan, made, worker_kills)


def _wait_for_a_running_trial(plan: SweepPlan, sweep: subprocess.Popen) -> None:
    """Until a trial of this round is RUNNING (not one a killed worker left), or the round ends."""
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while sweep.poll() is None and time.monotonic() < deadline:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if any(t.number not in before for t in running):
            return
        time.sleep(0.2)


def _read_back(plan: SweepPlan, kills: int, worker_kills: int) -> FaultReport:
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in FINISHED]
    curves = read_curves(open_storage(plan.storage_url).engine, plan.spec.name)
    curve_faults = sum(
        not np.array_equal(
            curves.get(t.number, {}).get("train_loss", ((), ()))[0], np.arange(t.user_attrs["steps_trained"])
        )
        for t in finished
    )
    return FaultReport(
        kills=kills,
        worker_kills=worker_kills,
        target=plan.spec.n_trials,
        finished=len(finished),
        running=sum(t.state is TrialState.RUNNING for t in trials),
        repeated=len(finished) - len({tuple(sorted(t.params.items())) for t in finished}),
        curve_faults=curve_faults,
        interrupted=sum(t.state is TrialState.FAIL for t in trials),
        continued=sum(t.user_attrs.get("resumed_from") is not None for t in finished),
    )


def _grokforecast() -> list[str]:
    """The command line of this interpreter's grokforecast."""
    return [sys.executable, "-c", "import sys; from grokforecast.cli import main; sys.exit(main())"]


def child_processes(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux; none elsewhere, and then the whole sweep is killed)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
