"""A fault campaign: a sweep SIGKILLed again and again at random moments, then resumed.

What a cluster does to a sweep all the time (preemption, the OOM killer, a lost node):
each kill waits until a trial of the running ``grokforecast resume`` (``workers``
processes; a new resume once the last was killed whole) has reported a randomly drawn
step (before or after the probe, in the checkpointed long run of a kept trial), and a
random fraction of a second later SIGKILLs either the whole sweep (parent and workers)
or that trial's worker, the others going on. Then the study is
resumed until it reports done, and read back: trials finished against the target, left
RUNNING, run twice with the same parameters, curves with a step missing or doubled, how
many trials were interrupted and how many continued from a checkpoint, and the steps
trained again because of the kills.

The steps trained again are counted per retry chain: the steps each attempt trained
(from the step it started at, 0 or a checkpoint, to its end or, killed, to the last step
it reported) summed over the chain, less the steps the finished trial needed. A retry
that continues from the newest checkpoint loses at most one checkpoint interval to each
kill; one that started over would lose everything its predecessor had trained. Steps a
killed attempt trained after its last report are not seen, so the count is a lower bound
by at most one report segment per kill.
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

from grokforecast.backends.optuna.objective import worker_of
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.storage import open_storage, read_curves
from grokforecast.sweep.study import FINISHED
from grokforecast.sweep.summary import ran_trials
from grokforecast.vocabulary import RESUMED_FROM_ATTR

#: Seconds after a trial reported the drawn step at which the kill falls: between
#: reports and checkpoints, not on them.
KILL_AFTER_SECONDS = (0.0, 0.5)
#: Longest wait for a round's trials to reach the drawn step.
ROUND_TIMEOUT_SECONDS = 600.0
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
    #: Steps the finished trials needed, and those trained again after kills (see the module).
    steps_needed: int
    steps_retrained: int
    checkpoint_every: int

    @property
    def intact(self) -> bool:
        """The study ended as if nothing had happened, at the cost of at most one checkpoint
        interval per interrupted trial."""
        exact = (self.finished, self.running, self.repeated, self.curve_faults) == (self.target, 0, 0, 0)
        return exact and self.steps_retrained <= self.interrupted * self.checkpoint_every


def run_campaign(plan: SweepPlan, workers: int, kills: int, seed: int = 0) -> FaultReport:
    """Kill ``kills`` rounds of the sweep of ``plan`` (its study created), resume it to the
    end, and report (see the module)."""
    rng = random.Random(seed)
    command = [*_grokforecast(), "resume", str(plan.spec_path), "--storage", plan.storage_url]
    command += ["--workers", str(workers)]
    made = worker_kills = 0
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    sweep: subprocess.Popen | None = None
    for _ in range(kills):
        if sweep is None or sweep.poll() is not None:  # (re)start the sweep: a resume
            sweep = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                cwd=plan.spec_path.parent,  # checkpoints under the study file's folder
            )
        runner = _wait_for_a_trial_at(study, sweep, step=rng.randrange(1, plan.spec.budget.full_steps))
        time.sleep(rng.uniform(*KILL_AFTER_SECONDS))
        if runner is not None and runner not in _workers_of_running_trials(study):
            runner = _a_worker_running_a_trial(study, sweep)  # its trial ended in the pause
        if sweep.poll() is not None:
            continue  # the sweep finished the study first: nothing left to kill
        if runner in worker_processes(sweep.pid) and rng.random() < 0.5:
            os.kill(runner, signal.SIGKILL)  # the trial's worker: the others go on
            worker_kills += 1
        else:
            os.killpg(sweep.pid, signal.SIGKILL)  # the parent and its workers at once
            sweep.wait(timeout=60)
        made += 1
    if sweep is not None:
        sweep.wait(timeout=1800)
    for _ in range(RESUMES_TO_FINISH):
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=1800, cwd=plan.spec_path.parent
        )
        if done.returncode == 0:
            break
    else:
        raise RuntimeError(f"the study did not finish after {RESUMES_TO_FINISH} resumes: {done.stderr}")
    return read_back(plan, made, worker_kills)


def _wait_for_a_trial_at(study: optuna.Study, sweep: subprocess.Popen, step: int) -> int | None:
    """Until a RUNNING trial of this round (not one a killed worker left) has reported
    ``step`` or later, or the round ends; returns the process id of that trial's worker."""
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    deadline = time.monotonic() + ROUND_TIMEOUT_SECONDS
    while sweep.poll() is None and time.monotonic() < deadline:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number not in before and max(trial.intermediate_values, default=-1) >= step:
                worker = worker_of(trial)
                return worker[1] if worker else None
        time.sleep(0.1)
    return None


def _workers_of_running_trials(study: optuna.Study) -> set[int]:
    """The process ids recorded as the workers of the study's RUNNING trials."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return {worker[1] for worker in map(worker_of, running) if worker is not None}


def _a_worker_running_a_trial(study: optuna.Study, sweep: subprocess.Popen) -> int | None:
    """Until one of the sweep's live processes runs a trial, or the sweep ends: that process
    (a small model's trial can end within the pause before a kill, which then would
    interrupt nothing)."""
    while sweep.poll() is None:
        running = _workers_of_running_trials(study) & {sweep.pid, *worker_processes(sweep.pid)}
        if running:
            return min(running)
        time.sleep(0.1)
    return None


def read_back(plan: SweepPlan, kills: int = 0, worker_kills: int = 0) -> FaultReport:
    """The study of ``plan`` read back after a campaign of ``kills`` (see the module)."""
    study = optuna.load_study(study_name=plan.spec.name, storage=plan.storage_url)
    trials = ran_trials(study)
    finished = [t for t in trials if t.state in FINISHED]
    curves = read_curves(open_storage(plan.storage_url).engine, plan.spec.name)
    curve_faults = sum(
        not np.array_equal(
            curves.get(t.number, {}).get("train_loss", ((), ()))[0], np.arange(t.user_attrs["steps_trained"])
        )
        for t in finished
    )
    by_number = {t.number: t for t in trials}
    chains = [[*t.system_attrs.get("retry_history", []), t.number] for t in finished]
    return FaultReport(
        kills=kills,
        worker_kills=worker_kills,
        target=plan.spec.n_trials,
        finished=len(finished),
        running=sum(t.state is TrialState.RUNNING for t in trials),
        repeated=len(finished) - len({tuple(sorted(t.params.items())) for t in finished}),
        curve_faults=curve_faults,
        interrupted=sum(t.state is TrialState.FAIL for t in trials),
        continued=sum(t.user_attrs.get(RESUMED_FROM_ATTR) is not None for t in finished),
        steps_needed=sum(int(t.user_attrs["steps_trained"]) for t in finished),
        steps_retrained=sum(_retrained([by_number[number] for number in chain]) for chain in chains),
        checkpoint_every=plan.spec.budget.checkpoint_every,
    )


def _retrained(chain: list[optuna.trial.FrozenTrial]) -> int:
    """Steps the attempts of a retry chain trained beyond what its finished trial needed.

    An attempt trained from where it started (0, or the checkpoint it resumed from) to its
    end or, killed, to the furthest step it is known to have reached: the last step it
    reported, or a checkpoint of its own that a later attempt resumed from. An attempt
    killed before it began trained nothing."""
    resumed = [trial.user_attrs.get(RESUMED_FROM_ATTR) or {} for trial in chain]
    trained = 0
    for trial, start in zip(chain, resumed, strict=True):
        known = [max(trial.intermediate_values, default=0), int(start.get("step", 0))]
        known += [int(later["step"]) for later in resumed if later.get("trial") == trial.number]
        reached = int(trial.user_attrs.get("steps_trained", max(known)))
        trained += max(0, reached - int(start.get("step", 0)))
    return trained - int(chain[-1].user_attrs["steps_trained"])


def _grokforecast() -> list[str]:
    """The command line of this interpreter's grokforecast."""
    return [sys.executable, "-c", "import sys; from grokforecast.cli import main; sys.exit(main())"]


def worker_processes(pid: int) -> list[int]:
    """The worker processes a sweep ``pid`` spawned: its children but multiprocessing's
    resource tracker (Linux; none elsewhere, and then the whole sweep is killed)."""
    workers = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for child in children:
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(int(child))
    except OSError:
        pass  # the sweep or a child ended meanwhile
    return workers
