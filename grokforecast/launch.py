"""Run a sweep on the chosen backend: train, show progress, end cleanly on Ctrl-C.

With one worker the trials train in this process (no second interpreter to start, no
second import of torch); with ``--workers N`` the parent trains nothing and starts N
worker processes. Either way the progress (:mod:`grokforecast.sweep.progress`) is redrawn
from the study database once a second. On Ctrl-C or SIGTERM every worker checkpoints its
trial at the end of the segment it is training (:mod:`grokforecast.sweep.shutdown`),
Optuna marks it FAIL, and the study can be resumed with ``grokforecast resume``.
On the Ray backend, Ray Tune runs the trials and saves the experiment for the resume.

This module sits above both backends (:mod:`grokforecast.backends`) and imports the Ray
one only when it is chosen.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from grokforecast.backends.optuna.workers import (
    quiet_interrupted_trials,
    reap_dead_trials,
    retry_interrupted,
    run_worker,
    start_workers,
)
from grokforecast.errors import GrokforecastError
from grokforecast.sweep import shutdown
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.populations import holds_populations
from grokforecast.sweep.progress import SweepProgress, sweep_progress
from grokforecast.sweep.study import create_study

POLL_SECONDS = 1.0


class SweepInterrupted(Exception):
    """A stop signal (Ctrl-C, SIGTERM) ended the sweep; the study is resumable."""

    def __init__(self, signum: signal.Signals | None) -> None:
        super().__init__(signum.name if signum else "interrupted")
        self.signum = signum


def run_sweep(
    plan: SweepPlan,
    n_workers: int = 1,
    resume: bool = False,
    progress: bool = True,
    backend: str = "optuna",
    ray_address: str | None = None,
) -> optuna.Study:
    """Run the study of ``plan`` to its target number of finished trials.

    ``backend="ray"`` hands the trials to Ray Tune (:mod:`grokforecast.backends.ray.runner`);
    the study database records them the same way.
    """
    if backend == "ray":
        from grokforecast.backends.ray.runner import check_ray_backend

        check_ray_backend(plan)
    storage = plan.open_storage()
    study = create_study(plan, storage)
    shown = sweep_progress(plan.spec.n_trials, plan.spec.budget.full_steps, progress)
    shown.update(study)
    try:
        if resume and _resumes_from_the_study(plan, backend):
            _retry_left_running(study, plan)
        if backend == "ray":
            _while_polling(study, shown, lambda: _run_on_ray(plan, study, ray_address, resume))
        else:
            with shutdown.graceful_stop():  # Ray Tune handles its own signals
                if n_workers == 1:
                    quiet_interrupted_trials()
                    _while_polling(
                        study,
                        shown,
                        lambda: run_worker(plan, 0, n_trials=plan.spec.n_trials, storage=storage),
                    )
                else:
                    _train_in_workers(plan, study, shown, n_workers)
    finally:
        shown.update(study)
        shown.close()
    return study


def _resumes_from_the_study(plan: SweepPlan, backend: str) -> bool:
    """Whether a resume finds the interrupted trials in the study database (Optuna workers,
    and populations on Ray) rather than in a Tune experiment that it restores."""
    return backend == "optuna" or holds_populations(plan.spec)


def _retry_left_running(study: optuna.Study, plan: SweepPlan) -> None:
    """Before a resume: fail the trials a killed worker left RUNNING and queue them again
    with the other interrupted ones (each retry continues from its trial's checkpoint).
    A stop signal meanwhile ends the sweep with nothing started."""
    with shutdown.graceful_stop():
        _reap(study, plan)
        retry_interrupted(study, plan.spec.heartbeat.max_retry, plan.spec.n_trials)
        if (signum := shutdown.requested()) is not None:
            raise SweepInterrupted(signum)


def _reap(study: optuna.Study, plan: SweepPlan) -> None:
    """Fail the trials a killed worker left RUNNING, waiting as long as a heartbeat may
    take to go stale."""
    heartbeat = plan.spec.heartbeat
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    if not running:
        return
    grace = heartbeat.stale_after + heartbeat.heartbeat_interval
    print(f"{running} trial(s) RUNNING: up to {grace} s to tell the dead workers' ones", file=sys.stderr)
    alive = reap_dead_trials(study, grace, heartbeat.max_retry)
    if alive:
        print(f"{alive} trial(s) still running elsewhere (their heartbeats are alive)", file=sys.stderr)


def _run_on_ray(plan: SweepPlan, study: optuna.Study, address: str | None, resume: bool) -> None:
    from grokforecast.backends.ray.runner import ExperimentInterrupted, run_ray_sweep

    try:
        run_ray_sweep(plan, study, address, resume)
    except ExperimentInterrupted:
        raise SweepInterrupted(signal.SIGINT) from None


def _while_polling(study: optuna.Study, shown: SweepProgress, train: Callable[[], None]) -> None:
    """Train in this process while a thread redraws the progress."""
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(stop, shown, study), daemon=True)
    poller.start()
    try:
        train()
    except shutdown.StopRequested as stopped:  # the trial is checkpointed and marked FAIL
        raise SweepInterrupted(stopped.signum) from None
    except KeyboardInterrupt:  # the signal again: Optuna has marked the running trial FAIL
        raise SweepInterrupted(shutdown.requested() or signal.SIGINT) from None
    finally:
        stop.set()
        poller.join()


def _poll(stop: threading.Event, shown: SweepProgress, study: optuna.Study) -> None:
    while not stop.wait(POLL_SECONDS):
        shown.update(study)


def _train_in_workers(plan: SweepPlan, study: optuna.Study, shown: SweepProgress, n_workers: int) -> None:
    """Start ``n_workers`` processes and show progress until they are done or told to stop
    (within :func:`~grokforecast.sweep.shutdown.graceful_stop`).

    A stop signal is passed on to every worker as SIGTERM (a terminal's Ctrl-C reaches
    them already; ``docker stop`` and ``kill`` reach the parent only): each checkpoints
    and marks its trial, and gets ``shutdown.STOP_GRACE_SECONDS`` to do so before it is killed.
    """
    processes = start_workers(plan, n_workers)
    try:
        while any(p.is_alive() for p in processes) and shutdown.requested() is None:
            shown.update(study)
            time.sleep(POLL_SECONDS)
        signum = shutdown.requested()
        if signum is not None:
            for process in processes:
                process.terminate()
            deadline = time.monotonic() + shutdown.STOP_GRACE_SECONDS
            for process in processes:
                process.join(timeout=max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:  # the signal again: stop now
        signum = shutdown.requested() or signal.SIGINT
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    if signum is not None:
        raise SweepInterrupted(signum)
    failed_workers = [p.name for p in processes if p.exitcode not in (0, None)]
    if failed_workers:
        raise GrokforecastError(f"{', '.join(failed_workers)} stopped with an error (its message is above)")
