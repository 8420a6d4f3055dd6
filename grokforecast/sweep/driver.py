"""The Optuna driver: create or join a study, run workers, retry what died, count the cost.

Every worker, on this machine (``--workers N`` starts N processes) or on another host
(``grokforecast worker``), runs the same loop: Optuna's ``study.optimize`` with the
sweep's :class:`~grokforecast.sweep.trial.TrialRun` as the objective, until the study
holds ``n_trials`` finished (COMPLETE or PRUNED) trials. All shared state lives in the
study database: RDB heartbeats fail the trials of a worker that died, and Optuna's retry
callback re-queues them; the retry continues from the dead trial's checkpoint.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from grokforecast.errors import GrokforecastError
from grokforecast.pruning import HjorthPruner
from grokforecast.sweep.spec import Choices, StudySpec, load_study_spec
from grokforecast.sweep.storage import display_url, open_storage
from grokforecast.sweep.trial import TrialRun

logger = logging.getLogger(__name__)

#: Study user attribute holding the study file's text, so any worker can rebuild the spec.
SPEC_ATTR = "grokforecast_spec"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class SweepPlan:
    """Where a sweep runs: its spec, its file, its storage URL and its checkpoints."""

    spec: StudySpec
    spec_path: Path
    storage_url: str

    @classmethod
    def load(cls, spec_path: str | Path, storage_url: str | None = None) -> SweepPlan:
        spec = load_study_spec(spec_path)
        return cls(spec, Path(spec_path), storage_url or spec.storage_url())

    @property
    def checkpoint_dir(self) -> Path:
        if self.spec.checkpoint_dir:
            return Path(self.spec.checkpoint_dir)
        return Path("runs") / self.spec_path.stem / "checkpoints"

    def open_storage(self) -> optuna.storages.RDBStorage:
        heartbeat = self.spec.heartbeat
        return open_storage(
            self.storage_url, heartbeat.heartbeat_interval, heartbeat.grace_period, heartbeat.max_retry
        )


def make_sampler(spec: StudySpec, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler; workers get distinct seeds so they do not propose the same points."""
    seed = None if spec.sampler.seed is None else spec.sampler.seed + worker_index
    kind = spec.sampler.kind
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(seed=spec.sampler.seed)  # one sequence shared by workers
    grid = {
        name: (dist.choices if isinstance(dist, Choices) else dist.grid) for name, dist in spec.search.items()
    }
    return optuna.samplers.GridSampler(grid, seed=spec.sampler.seed)


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The study file's pruner: the HjorthPruner deciding on the probe's last step (or
    Optuna's MedianPruner on validation accuracy, or none)."""
    settings = spec.pruner
    if not settings.enabled:
        return optuna.pruners.NopPruner()
    if settings.kind == "median":  # the trial then reports validation accuracy (TrialRun)
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings.n_startup_trials, n_warmup_steps=spec.budget.probe_steps
        )
    return HjorthPruner(
        # After probe_steps updates the last training loss recorded is that of step
        # probe_steps - 1 (papers' convention: loss at step s is measured before update s+1).
        probe_step=max(1, spec.budget.probe_steps - 1),
        threshold=settings.threshold,
        keep_top=settings.keep_top,
        n_min_probed=settings.n_min_probed,
        exploration=settings.exploration,
        recalibrate=settings.recalibrate,
        min_calibration_trials=settings.min_calibration_trials,
        seed=settings.seed,
    )


def check_ray_backend(plan: SweepPlan) -> None:
    """Refuse, before anything is stored, the pruner settings only the Optuna backend has."""
    pruner = plan.spec.pruner
    if pruner.enabled and pruner.kind != "hjorth":
        raise GrokforecastError(
            f"{plan.spec_path}: pruner.kind = {pruner.kind!r} runs on the Optuna backend only; "
            "remove it or use --backend optuna"
        )
    if pruner.keep_top is not None:
        raise GrokforecastError(
            f"{plan.spec_path}: pruner.keep_top ranks trials through the Optuna study and is not "
            "available on the Ray backend; use pruner.threshold or --backend optuna"
        )


def create_study(plan: SweepPlan) -> optuna.Study:
    """Create the study, or load it if it exists (then the spec must be the same study's)."""
    storage = plan.open_storage()
    spec = plan.spec
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        direction=spec.study_direction,
        sampler=make_sampler(spec),
        load_if_exists=True,
    )
    text = plan.spec_path.read_text()
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        study.set_user_attr(SPEC_ATTR, text)
        study.set_user_attr("grokforecast_spec_file", plan.spec_path.name)
    elif _search_space(stored) != _search_space(text):
        raise GrokforecastError(
            f"study {spec.name!r} in {display_url(plan.storage_url)} was made from a study file with another "
            f"search space or budget; give {plan.spec_path} a new name or use the original file"
        )
    return study


def _search_space(spec_text: str) -> tuple:
    data = tomllib.loads(spec_text)
    return (data.get("search"), data.get("train"), data.get("budget"))


def load_study(
    plan: SweepPlan, worker_index: int = 0, storage: optuna.storages.RDBStorage | None = None
) -> optuna.Study:
    """Join an existing study as a worker."""
    storage = storage or plan.open_storage()
    try:
        return optuna.load_study(
            study_name=plan.spec.name,
            storage=storage,
            sampler=make_sampler(plan.spec, worker_index),
            pruner=make_pruner(plan.spec),
        )
    except KeyError:
        raise GrokforecastError(
            f"no study {plan.spec.name!r} in {display_url(plan.storage_url)}; "
            f"start it with: grokforecast sweep {plan.spec_path}"
        ) from None


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


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
    spec_path: str,
    storage_url: str,
    worker_index: int | None = None,
    threads: int | None = None,
    n_trials: int | None = None,
) -> None:
    """One worker: optimize until the study holds its target number of finished trials.

    ``worker_index`` offsets the sampler seed; a worker that joins from another host
    (``None``) takes its process id, so no two workers propose the same points.
    """
    plan = SweepPlan.load(spec_path, storage_url)
    worker_index = os.getpid() if worker_index is None else worker_index
    if threads:
        import torch

        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = plan.open_storage()
    study = load_study(plan, worker_index, storage)
    target = n_trials or plan.spec.n_trials
    if finished_trials(study) >= target:
        return
    objective = TrialRun(plan.spec, storage.engine, plan.checkpoint_dir)
    study.optimize(
        objective,
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


def _worker_main(spec_path: str, storage_url: str, worker_index: int, threads: int, n_trials: int) -> None:
    quiet_interrupted_trials()
    try:
        run_worker(spec_path, storage_url, worker_index, threads, n_trials)
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
            args=(str(plan.spec_path), plan.storage_url, index, threads, plan.spec.n_trials),
            name=f"grokforecast-worker-{index}",
        )
        for index in range(n_workers)
    ]
    for process in processes:
        process.start()
    return processes
