"""Run a sweep on the chosen backend: train, show progress, end cleanly on Ctrl-C.

With one worker the trials train in this process (no second interpreter to start, no
second import of torch); with ``--workers N`` the parent trains nothing and starts N
worker processes. Either way a progress bar is redrawn from the study database once a
second (trials finished, pruned, running, compute saved), so it is right however many
workers or hosts take part. On Ctrl-C every worker stops its trial (Optuna marks it FAIL,
its checkpoint stays) and the study can be resumed with ``grokforecast resume``.
On the Ray backend, Ray Tune runs the trials and saves the experiment for the resume.

This module sits above both backends (:mod:`grokforecast.backends`) and imports the Ray
one only when it is chosen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import optuna
from tqdm import tqdm

from grokforecast.backends.optuna.workers import (
    quiet_interrupted_trials,
    retry_interrupted,
    run_worker,
    start_workers,
)
from grokforecast.errors import GrokforecastError
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.study import create_study
from grokforecast.sweep.summary import summarize

POLL_SECONDS = 1.0


class SweepInterrupted(Exception):
    """The user pressed Ctrl-C; the study is resumable."""


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
    bar = tqdm(total=plan.spec.n_trials, unit="trial", disable=not progress, dynamic_ncols=True)
    try:
        if backend == "ray":
            _while_polling(plan, study, bar, lambda: _run_on_ray(plan, study, ray_address, resume))
        else:
            if resume:
                retry_interrupted(study, plan.spec.heartbeat.max_retry)
            if n_workers == 1:
                quiet_interrupted_trials()
                _while_polling(
                    plan,
                    study,
                    bar,
                    lambda: run_worker(plan, 0, n_trials=plan.spec.n_trials, storage=storage),
                )
            else:
                _train_in_workers(plan, study, bar, n_workers)
    finally:
        _update(bar, study, plan)
        bar.close()
    return study


def _run_on_ray(plan: SweepPlan, study: optuna.Study, address: str | None, resume: bool) -> None:
    from grokforecast.backends.ray.runner import ExperimentInterrupted, run_ray_sweep

    try:
        run_ray_sweep(plan, study, address, resume)
    except ExperimentInterrupted:
        raise SweepInterrupted from None


def _while_polling(plan: SweepPlan, study: optuna.Study, bar: tqdm, train: Callable[[], None]) -> None:
    """Train in this process while a thread redraws the bar."""
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(stop, bar, study, plan), daemon=True)
    poller.start()
    try:
        train()
    except KeyboardInterrupt:  # Optuna has marked the running trial FAIL
        raise SweepInterrupted from None
    finally:
        stop.set()
        poller.join()


def _poll(stop: threading.Event, bar: tqdm, study: optuna.Study, plan: SweepPlan) -> None:
    while not stop.wait(POLL_SECONDS):
        _update(bar, study, plan)


def _train_in_workers(plan: SweepPlan, study: optuna.Study, bar: tqdm, n_workers: int) -> None:
    """Start ``n_workers`` processes and redraw the bar until they are done."""
    processes = start_workers(plan, n_workers)
    try:
        while any(p.is_alive() for p in processes):
            _update(bar, study, plan)
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        for process in processes:  # the workers got the same SIGINT; let them mark their trials
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
        raise SweepInterrupted from None
    failed_workers = [p.name for p in processes if p.exitcode not in (0, None)]
    if failed_workers:
        raise GrokforecastError(f"{', '.join(failed_workers)} stopped with an error (its message is above)")


def _update(bar: tqdm, study: optuna.Study, plan: SweepPlan) -> None:
    summary = summarize(study, plan.spec.budget.full_steps)
    bar.n = min(summary.finished, bar.total)
    bar.set_postfix(
        pruned=summary.pruned,
        grokked=summary.grokked,
        running=summary.running,
        saved=f"{100 * summary.saved:.0f}%",
        refresh=False,
    )
    bar.refresh()
