"""Optuna workers: join the study, run trials until it holds its target, retry what died.

Every worker, on this machine (``--workers N`` starts N processes) or on another host
(``grokforecast worker``), runs the same loop (with ``[budget] population = K``, in K
threads whose trials train as one stacked model: :mod:`grokforecast.sweep.populations`):
Optuna's ``study.optimize`` with the sweep's
:class:`~grokforecast.backends.optuna.objective.TrialRun` as the objective, until
the study holds ``n_trials`` finished (COMPLETE or PRUNED) trials, and exactly that many
however many workers race: a worker asks for no trial once finished plus running ones
reach the target, and a trial two workers asked for at once runs only if the target
still has room for it by trial number (:func:`within_target`). All shared state lives
in the study database: RDB heartbeats fail the trials of a worker that died, and Optuna's
retry callback re-queues them; the retry continues from the dead trial's checkpoint.
A resume first waits for the heartbeats of trials left RUNNING (:func:`reap_dead_trials`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import sys
import time
import zlib
from collections.abc import Callable, Sequence

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models
from optuna.trial import TrialState

from grokforecast.backends.optuna.objective import TrialRun, worker_identity
from grokforecast.backends.optuna.pruner import HjorthPruner
from grokforecast.errors import GrokforecastError
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.populations import SharedPopulation, choose_population
from grokforecast.sweep.shutdown import graceful_stop, stop_with_parent
from grokforecast.sweep.spec import StudySpec
from grokforecast.sweep.storage import rdb_storage
from grokforecast.sweep.study import FINISHED, load_study
from grokforecast.vocabulary import SURPLUS_ATTR, WORKER_ATTR

#: Trial states that count towards a study's target (running ones if their worker lives).
CLAIMED = (*FINISHED, TrialState.RUNNING)


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


def retry_interrupted(
    study: optuna.Study, max_retry: int, target: int | None = None, left_by: str | None = None
) -> int:
    """Queue again the FAIL trials no other trial retries yet (Ctrl-C, SIGTERM, a crash, a
    lost host): as many as ``target`` finished trials leave room for (all without one),
    and only those the worker ``left_by`` was running (a restarted worker's own: see
    :func:`~grokforecast.backends.optuna.objective.worker_identity`) when it is given.

    Uses Optuna's retry callback, so a retry looks the same whether the heartbeat or a
    resume found the failure, and continues from the failed trial's checkpoint.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    room = len(trials) if target is None else target - len(claimed_trials(study))
    room -= len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    queued = 0
    for trial in trials:
        if queued >= room:
            break
        if (
            trial.state is TrialState.FAIL
            and trial.number not in retried
            and SURPLUS_ATTR not in trial.system_attrs
            and left_by in (None, trial.user_attrs.get(WORKER_ATTR))
        ):
            callback(study, trial)
            queued += 1
    return queued


def claimed_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards the target: finished ones, and running ones whose
    worker is alive (a dead worker's trial is failed first, through its stale heartbeat,
    and retried). Counted before each new trial, so that racing workers stop at the
    target instead of each finishing one more."""
    optuna.storages.fail_stale_trials(study)
    return study.get_trials(deepcopy=False, states=CLAIMED)


class SurplusTrial(Exception):
    """The trial was asked for after the study's target was claimed by others."""


def within_target(objective: Callable[[optuna.Trial], float], target: int) -> Callable[[optuna.Trial], float]:
    """``objective``, run only for a trial the target has room for: fewer than ``target``
    claimed trials numbered before it. Two workers that ask at the same moment get
    consecutive numbers from the storage, so exactly one of them runs the last trial;
    the other's trial is marked surplus (FAIL, never retried) and that worker stops."""

    def run(trial: optuna.Trial) -> float:
        study = trial.study
        if sum(t.number < trial.number for t in claimed_trials(study)) >= target:
            study._storage.set_trial_system_attr(trial._trial_id, SURPLUS_ATTR, True)
            raise SurplusTrial(f"trial {trial.number} is past the target of {target}")
        return objective(trial)

    return run


class StopAtTarget:
    """Optuna callback: stop this worker once :func:`claimed_trials` reaches ``target``."""

    def __init__(self, target: int) -> None:
        self.target = target

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if len(claimed_trials(study)) >= self.target:
            study.stop()


def reap_dead_trials(study: optuna.Study, grace_seconds: float, max_retry: int) -> int:
    """Fail (and so retry from their checkpoints) the RUNNING trials whose worker is gone,
    waiting ``grace_seconds`` for their heartbeats to go stale; returns how many still run
    (their workers, elsewhere, are alive). A resume calls this first: a worker killed
    moments before leaves its trial RUNNING with a fresh heartbeat. A worker killed between
    creating its trial and the trial's first heartbeat leaves one that Optuna's check never
    sees: if it still has no heartbeat after the wait, it is failed here."""
    silent = _without_heartbeat(study)
    deadline = time.monotonic() + grace_seconds
    while True:
        optuna.storages.fail_stale_trials(study)
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if not running or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    never_beat = silent & _without_heartbeat(study)
    if never_beat:
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial._trial_id in never_beat:
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                retry(study, study._storage.get_trial(trial._trial_id))
    return running - len(never_beat)


def _without_heartbeat(study: optuna.Study) -> set[int]:
    """Ids of the study's RUNNING trials that have recorded no heartbeat (RDB storage)."""
    storage = rdb_storage(study)
    if storage is None:
        return set()
    trials, beats = models.TrialModel.__table__, models.TrialHeartbeatModel.__table__
    query = sa.select(trials.c.trial_id).where(
        trials.c.study_id == study._study_id,
        trials.c.state == TrialState.RUNNING,
        ~trials.c.trial_id.in_(sa.select(beats.c.trial_id)),
    )
    with storage.engine.connect() as connection:
        return set(connection.execute(query).scalars())


def run_worker(
    plan: SweepPlan,
    worker_index: int | None = None,
    threads: int | None = None,
    n_trials: int | None = None,
    storage: optuna.storages.RDBStorage | None = None,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> None:
    """One worker: optimize until the study holds its target number of finished trials.

    ``worker_index`` offsets the sampler seed; a worker that joins from another host
    (``None``) takes a number from its host name and process id (containers all run as
    process 1), so no two workers propose the same points. A worker in the sweep's own
    process shares its ``storage``; other processes open their own. ``callbacks`` are
    called with each trial the worker ends, as Optuna's ``optimize`` calls its own.
    """
    own_trials_only = worker_index is None
    if worker_index is None:
        worker_index = zlib.crc32(worker_identity().encode())
    if threads:
        import torch

        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage or plan.open_storage()
    study = load_study(plan, worker_index, storage, pruner=make_pruner(plan.spec))
    target = n_trials or plan.spec.n_trials
    if own_trials_only:  # a restarted worker (a container: the same host, process 1) continues its own
        retry_interrupted(study, plan.spec.heartbeat.max_retry, target, left_by=worker_identity())
    if len(claimed_trials(study)) >= target:
        return
    population = plan.spec.budget.population
    if population == "auto":  # measured here when no command measured it for every worker
        population, _ = choose_population(plan.spec)
    shared = SharedPopulation(population) if population > 1 else None
    # SurplusTrial: another worker claimed the last trial first; the study is at its target.
    with shared or contextlib.nullcontext(), graceful_stop(), contextlib.suppress(SurplusTrial):
        run = TrialRun(plan, storage.engine, shared)
        objective = within_target(run, target)
        study.optimize(
            objective,
            n_jobs=population,  # a population's trials: one thread each, trained together
            callbacks=[run.after_trial, *callbacks, StopAtTarget(target)],
            gc_after_trial=False,
        )


def _quiet_trial_failures(record: logging.LogRecord) -> bool:
    kind = record.exc_info[0] if record.exc_info else None
    if kind is None:
        return True
    if issubclass(kind, SurplusTrial | sa.exc.SQLAlchemyError | optuna.exceptions.StorageInternalError):
        return False  # nothing ran, or the command reports the database's failure in one line
    if issubclass(kind, KeyboardInterrupt):
        record.exc_info = None
    return True


def quiet_interrupted_trials() -> None:
    """Optuna logs a trial stopped by Ctrl-C with a full traceback; keep it to one line
    (and a surplus trial, which ran nothing, or a failing database, which the command
    reports itself, to none)."""
    logging.getLogger("optuna.study._optimize").addFilter(_quiet_trial_failures)


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
