"""Run a sweep on this machine: start the workers, show progress, end cleanly on Ctrl-C.

The parent process trains nothing. It creates (or loads) the study, starts the worker
processes, and redraws a progress bar from the study database once a second (trials
finished, pruned, running, compute saved), so the bar is right however many workers or
hosts take part. On Ctrl-C every worker stops its trial (Optuna marks it FAIL, its
checkpoint stays) and the study can be resumed with ``grokforecast resume``.
"""

from __future__ import annotations

import time

import optuna
from tqdm import tqdm

from grokforecast.errors import GrokforecastError
from grokforecast.sweep.driver import SweepPlan, create_study, retry_interrupted, start_workers
from grokforecast.sweep.summary import summarize

POLL_SECONDS = 1.0


class SweepInterrupted(Exception):
    """The user pressed Ctrl-C; the study is resumable."""


def run_sweep(
    plan: SweepPlan, n_workers: int = 1, resume: bool = False, progress: bool = True
) -> optuna.Study:
    """Run the study of ``plan`` to its target number of finished trials."""
    study = create_study(plan)
    if resume:
        retry_interrupted(study, plan.spec.heartbeat.max_retry)
    processes = start_workers(plan, n_workers)
    bar = tqdm(total=plan.spec.n_trials, unit="trial", disable=not progress, dynamic_ncols=True)
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
    finally:
        _update(bar, study, plan)
        bar.close()
    failed_workers = [p.name for p in processes if p.exitcode not in (0, None)]
    if failed_workers:
        raise GrokforecastError(f"{', '.join(failed_workers)} stopped with an error (its message is above)")
    return study


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
