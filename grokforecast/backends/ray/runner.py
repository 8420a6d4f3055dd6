"""``grokforecast sweep --backend ray``: a sweep run by Ray Tune, recorded in the study database.

Ray Tune places the trials on the cluster's resources (CPUs, GPUs or fractions of one per
trial, from the study file's ``[ray]`` section), stops the ones the forecast gives up on
(:class:`GrokForecastScheduler`), retries crashed ones from their Tune checkpoints, and
saves the experiment under ``runs/<study file>/ray/``. Optuna samples every trial and the
study database records the true outcome of each (:class:`StudySearcher`), so status,
export, reports and optuna-dashboard read a Ray sweep exactly like an Optuna one.

With ``[budget] population = K`` each Tune trial holds a population of the study's trials
instead (:mod:`grokforecast.backends.ray.populations`), saved under ``runs/<study
file>/ray-populations/``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import FIFOScheduler

from grokforecast.backends.ray.populations import POPULATION_INDEX, population_count, train_population
from grokforecast.backends.ray.scheduler import GrokForecastScheduler
from grokforecast.backends.ray.searcher import StudySearcher, settle
from grokforecast.backends.ray.trainable import train_trial
from grokforecast.errors import GrokforecastError
from grokforecast.sweep.outcomes import grok_label, probed_outcomes
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.populations import holds_populations
from grokforecast.sweep.storage import absolute_url
from grokforecast.sweep.study import finished_trials
from grokforecast.vocabulary import TRIAL_NUMBER

logger = logging.getLogger(__name__)

#: Object store of a local runtime: trials exchange only small results and checkpoints.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2


class ExperimentInterrupted(Exception):
    """Ray Tune stopped on Ctrl-C after saving the experiment; ``resume`` continues it."""


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address`` (or ``RAY_ADDRESS``), else start a small local runtime.

    The local runtime is asked for by name (``address="local"``): a bare ``ray.init()`` would
    join whatever cluster ``/tmp/ray/ray_current_cluster`` last named, even a dead one.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(
                address="local",
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                logging_level=logging.WARNING,
                # Trials Tune stops print Ray's SIGTERM tracebacks; errors are reported below.
                log_to_driver=False,
            )
    except ray.exceptions.AuthenticationError:
        raise GrokforecastError(
            f"the Ray cluster at {address} asks for its token: copy the head node's ~/.ray/auth_token "
            "to this machine and set RAY_AUTH_MODE=token"
        ) from None
    except (ConnectionError, RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise GrokforecastError(
            f"cannot reach the Ray cluster at {address}: {first_line}; start one with "
            "'ray start --head --port 6380' or leave out --ray-address for a local runtime"
        ) from None


def experiment_root(plan: SweepPlan) -> Path:
    """Where the sweep's Tune experiments live: ``runs/<study file>/ray`` beside the checkpoints."""
    return (plan.checkpoint_dir.parent / "ray").resolve()


def population_experiment_root(plan: SweepPlan) -> Path:
    """Where a population sweep's Tune experiments live: ``runs/<study file>/ray-populations``
    (apart, so that a resume of single Tune trials never restores one)."""
    return experiment_root(plan).with_name("ray-populations")


def check_ray_backend(plan: SweepPlan) -> None:
    """Refuse, before anything is stored, the pruner only the Optuna backend has."""
    pruner = plan.spec.pruner
    if pruner.enabled and pruner.kind != "hjorth":
        raise GrokforecastError(
            f"{plan.spec_path}: pruner.kind = {pruner.kind!r} runs on the Optuna backend only; "
            "remove it or use --backend optuna"
        )


def run_ray_sweep(
    plan: SweepPlan, study: optuna.Study, address: str | None = None, resume: bool = False
) -> None:
    """Run ``study``, the study of ``plan``, on Ray Tune to its target number of finished trials.

    With ``resume``, the newest unfinished Tune experiment of the sweep is restored first
    (running and errored trials continue from their checkpoints), then new trials are
    added until the study holds its target. A population sweep keeps its state in the
    study alone: its resume (whose trials left RUNNING were retried by then) starts new
    populations.
    """
    check_ray_backend(plan)
    connect(address)
    # Tune runs each trial in a folder of its own: every path the trials use is made absolute.
    absolute_checkpoints = plan.spec.model_copy(update={"checkpoint_dir": str(plan.checkpoint_dir.resolve())})
    plan = dataclasses.replace(plan, spec=absolute_checkpoints, storage_url=absolute_url(plan.storage_url))
    if holds_populations(plan.spec):
        _fit_populations(plan, study)
        return
    trainable = _with_trial_resources(train_trial, plan)
    if resume:
        latest = _latest_experiment(experiment_root(plan))
        if latest is not None:
            restored = tune.Tuner.restore(str(latest), trainable, resume_unfinished=True, resume_errored=True)
            _fit_and_reconcile(restored, study, plan)
    remaining = plan.spec.n_trials - finished_trials(study)
    if remaining > 0:
        _fit_and_reconcile(_new_tuner(plan, study, trainable, remaining), study, plan)


def _with_trial_resources(trainable: Callable[..., None], plan: SweepPlan) -> object:
    """``trainable`` given the sweep's plan, on the resources of one Tune trial."""
    return tune.with_resources(
        tune.with_parameters(trainable, plan=plan),
        {"cpu": plan.spec.ray.cpus_per_trial, "gpu": plan.spec.ray.gpus_per_trial},
    )


def _fit_populations(plan: SweepPlan, study: optuna.Study) -> None:
    """Run the study's remaining trials in populations, one per Tune trial, as many at once
    as the cluster holds; a population that failed for good is one line, naming its log."""
    remaining = plan.spec.n_trials - finished_trials(study)
    if remaining <= 0:
        return
    count = population_count(plan.spec, remaining)
    tuner = tune.Tuner(
        _with_trial_resources(train_population, plan),
        param_space={POPULATION_INDEX: tune.grid_search(list(range(count)))},
        run_config=_run_config(plan, population_experiment_root(plan), callbacks=[]),
    )
    results = _fit(tuner)
    failed = [result for result in results if result.error is not None]
    if failed:
        result = failed[0]
        raise GrokforecastError(
            f"population {result.config[POPULATION_INDEX]} failed on Ray: {_last_line(result.error)} "
            f"(log: {result.path}); once it is fixed, 'grokforecast resume' retries its trials "
            "from their checkpoints"
        )


def _new_tuner(plan: SweepPlan, study: optuna.Study, trainable: object, n_trials: int) -> tune.Tuner:
    spec = plan.spec
    if spec.pruner.enabled:
        scheduler = forecast_scheduler(plan, study)
        callbacks = [scheduler.callback(print_decisions=False)]  # the study records them
    else:
        scheduler, callbacks = FIFOScheduler(), []
    searcher = StudySearcher(plan, scheduler if spec.pruner.enabled else None)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=n_trials,
            max_concurrent_trials=spec.ray.max_concurrent_trials,
        ),
        run_config=_run_config(plan, experiment_root(plan), callbacks),
    )


def _run_config(plan: SweepPlan, root: Path, callbacks: list) -> tune.RunConfig:
    """A new Tune experiment of the sweep under ``root``: a crashed Tune trial is restarted
    up to ``[heartbeat] max_retry`` times, from its newest checkpoint."""
    return tune.RunConfig(
        name=f"{plan.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        storage_path=str(root),
        callbacks=callbacks,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=plan.spec.heartbeat.max_retry),
        verbose=0,
    )


def forecast_scheduler(plan: SweepPlan, study: optuna.Study) -> GrokForecastScheduler:
    """The study file's pruner as a Tune scheduler, taught by the study's finished trials
    (a resumed sweep recalibrates on the trials of its earlier runs, as the Optuna
    backend's pruner does)."""
    # The scheduler's keywords are the policy's settings, by name.
    scheduler = GrokForecastScheduler(**dataclasses.asdict(plan.spec.policy_settings()))
    label = grok_label(study, grok_value=None)  # the trainable records "grokked" on every trial
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for number, outcome in probed_outcomes(completed, label).items():
        scheduler.add_outcome(number, outcome)
    return scheduler


def _fit_and_reconcile(tuner: tune.Tuner, study: optuna.Study, plan: SweepPlan) -> None:
    reconcile(study, _fit(tuner), plan.spec.objective)


def _fit(tuner: tune.Tuner) -> tune.ResultGrid:
    """``tuner.fit()``, with grokforecast's progress instead of Tune's; Ctrl-C (after which
    Tune has saved the experiment) is :class:`ExperimentInterrupted`."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the progress bar is grokforecast's
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A failed Tune trial is reported in one line, naming its log, instead of a traceback.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    logging.getLogger("ray.tune.tune").addFilter(_not_the_list_of_failed_trials)
    before = signal.getsignal(signal.SIGINT)
    results = tuner.fit()
    if _tune_caught_sigint(before):
        raise ExperimentInterrupted(str(results.experiment_path))
    return results


def _not_the_list_of_failed_trials(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Trials did not complete")


def _tune_caught_sigint(before: object) -> bool:
    """Whether Ctrl-C ended ``Tuner.fit`` (it then saved the experiment and returned).

    During ``fit`` (in the main thread) Tune replaces the SIGINT handler with its own and
    puts the previous one back only when the signal arrives; otherwise its handler stays,
    and is replaced here by the previous one.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is before:
        return True
    signal.signal(signal.SIGINT, before)
    return False


def reconcile(study: optuna.Study, results: tune.ResultGrid, objective: str) -> int:
    """Settle every Optuna trial of a finished Tune experiment that is still RUNNING.

    A trial with an outcome in its last result gets it; one without (it errored for good,
    or never started) is failed. Returns how many trials were settled here.
    """
    settled = 0
    for result in results:
        number = (result.config or {}).get(TRIAL_NUMBER)
        if number is None:
            continue
        if result.error is not None:
            line = _last_line(result.error)
            logger.warning("trial %d failed on Ray: %s (log: %s)", number, line, result.path)
        state = settle(study, number, result.metrics, None, objective, error=result.error is not None)
        if state is None:
            state = settle(study, number, None, None, objective, error=True)
        settled += state is not None
    return settled


def _last_line(error: BaseException) -> str:
    """The line of a Tune trial's error that says what went wrong (Ray puts the cause last)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[-1]


def _latest_experiment(root: Path) -> Path | None:
    candidates = [p for p in root.glob("*") if p.is_dir() and tune.Tuner.can_restore(str(p))]
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)
