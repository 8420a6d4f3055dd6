"""Optuna workers: join the study, run trials until it holds its target, retry what died.

Every worker, on this machine (``--workers N`` starts N processes) or on another host
(``grokforecast worker``), runs the same loop: Optuna's ``study.optimize`` with the
sweep's :class:`~grokforecast.backends.optuna.objective.TrialRun` as the objective, until
the study holds ``n_trials`` finished (COMPLETE or PRUNED) trials. All shared state lives
in the study database: RDB heartbeats fail the trials of a worker that died, and Optuna's
retry callback re-queues them; the retry continues from the dead trial's checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import sys

import optuna
from optuna.trial import TrialState

from grokforecast.backends.optuna.objective import TrialRun
from grokforecast.backends.optuna.pruner import HjorthPruner
from grokforecast.errors import GrokforecastError
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.shutdown import graceful_stop, stop_with_parent
from grokforecast.sweep.spec import StudySpec
from grokforecast.sweep.study import FINISHED, finished_trials, load_study


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The study file's pruner: the HjorthPruner with the study's stopping policy (or
    Optuna's MedianPruner on validation accuracy, or none)."""
    settings = spec.pruner
    if not settings.enabled:
        return optuna.pruners.NopPruner()
    if settings.kind == "median":  # the trial then reports validation accuracy (objective.py)
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings.n_startup_trials, n_warmup_steps=spec.budget.probe_steps
        )
    # The pruner's keywords are the policy's settings, by name.
    return HjorthPruner(**dataclasses.asdict(spec.policy_settings()))


def retry_interrupted(study: optuna.Study, max_retry: int) -> int:
    """Queue again every FAIL trial no other trial retries yet (Ctrl-C, a crash, a lost host).

    Uses Optuna's retry callback, so a retry looks the same whether the heartbeat or a
    resume found the failure, and continues from the failed trial's checkpoint.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    queued = 0
    for trial in trials:
        if trial.state is TrialState.FAIL and trial.number not in retried:
            callback(study, trial)
            queued += 1
    return queued


def run_worker(
    plan: SweepPlan,
    worker_index: int | None = None,
    threads: int | None = None,
    n_trials: int | None = None,
    storage: optuna.storages.RDBStorage | None = None,
) -> None:
    """One worker: optimize until the study holds its target number of finished trials.

    ``worker_index`` offsets the sampler seed; a worker that joins from another host
    (``None``) takes its process id, so no two workers propose the same points. A worker
    in the sweep's own process shares its ``storage``; other processes open their own.
    """
    worker_index = os.getpid() if worker_index is None else worker_index
    if threads:
        import torch

        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage or plan.open_storage()
    study = load_study(plan, worker_index, storage, pruner=make_pruner(plan.spec))
    target = n_trials or plan.spec.n_trials
    if finished_trials(study) >= target:
        return
    with graceful_stop():
        study.optimize(
            TrialRun(plan, storage.engine),
            callbacks=[optuna.study.MaxTrialsCallback(target, states=FINISHED)],
            gc_after_trial=False,
        )


def _drop_interrupt_tracebacks(record: logging.LogRecord) -> bool:
    if (
        record.exc_info
        and record.exc_info[0] is not None
        and issubclass(record.exc_info[0], KeyboardInterrupt)
    ):
        record.exc_info = None
    return True


def quiet_interrupted_trials() -> None:
    """Optuna logs a trial stopped by Ctrl-C with a full traceback; keep it to one line."""
    logging.getLogger("optuna.study._optimize").addFilter(_drop_interrupt_tracebacks)


def _worker_main(plan: SweepPlan, worker_index: int, threads: int, n_trials: int, parent_pid: int) -> None:
    stop_with_parent(parent_pid)
    quiet_interrupted_trials()
    try:
        run_worker(plan, worker_index, threads, n_trials)
    except KeyboardInterrupt:
        pass  # Optuna has marked the running trial FAIL; resume retries it from its checkpoint
    except GrokforecastError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def start_workers(plan: SweepPlan, n_workers: int) -> list[multiprocessing.Process]:
    """Start worker processes (spawned: safe with CUDA), sharing the cores between them."""
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    processes = [
        context.Process(
            target=_worker_main,
            args=(plan, index, threads, plan.spec.n_trials, os.getpid()),
            name=f"grokforecast-worker-{index}",
        )
        for index in range(n_workers)
    ]
    for process in processes:
        process.start()
    return processes
