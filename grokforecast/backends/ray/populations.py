"""Populations on Ray Tune: each Tune trial is one worker whose trials train as one stacked model.

With ``[budget] population = K`` (or ``--population K``) on ``--backend ray``, Tune places
workers rather than single trials. Each Tune trial runs the Optuna backend's worker loop
(:func:`~grokforecast.backends.optuna.workers.run_worker`) on the resources of one Tune
trial (``[ray] cpus_per_trial``, ``gpus_per_trial``): K threads whose trials train
together (:mod:`grokforecast.sweep.populations`), a slot refilled with the study's next
trial as soon as its trial ends, until the study holds its target.

The member trials are Optuna trials of the study, judged by the
:class:`~grokforecast.HjorthPruner` (the same stopping policy, with the same settings, as
the :class:`~grokforecast.GrokForecastScheduler` of single-trial Ray sweeps) and recorded
exactly as on the Optuna backend, heartbeats included. The Tune trial reports one result
per member trial that ends (:func:`member_result`). All state lives in the study
database: a population whose process dies (a lost node, a killed actor, Ctrl-C) leaves its
members RUNNING with heartbeats that go stale, and they are retried from their checkpoints
by whichever worker runs next, the one Tune restarts (``failure_config``) or those of
``grokforecast resume``. A resume therefore starts a new Tune experiment of populations
instead of restoring the old one.
"""

from __future__ import annotations

import math
import queue
import signal
import threading
from typing import Any

import optuna
import ray
from ray import tune

from grokforecast.backends.optuna.workers import quiet_interrupted_trials, run_worker
from grokforecast.sweep import shutdown
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.spec import StudySpec
from grokforecast.vocabulary import OUTCOME_KEYS

#: The Tune config key of a population: its index, which offsets its sampler's seed.
POPULATION_INDEX = "population"
#: Seconds between a population's progress results while no member ends.
PROGRESS_SECONDS = 2.0


def population_count(spec: StudySpec, remaining: int) -> int:
    """How many population Tune trials to start: as many as the cluster runs at once
    (``[ray] max_concurrent_trials``, else its CPUs and GPUs over one trial's share), and
    no more than ``remaining`` trials can fill (K each; ``"auto"`` sizes are measured by
    each population on its own device, so counted as one)."""
    resources, share = ray.cluster_resources(), spec.ray
    fits = [resources.get("CPU", 1.0) // share.cpus_per_trial]
    if share.gpus_per_trial:
        fits.append(resources.get("GPU", 0.0) // share.gpus_per_trial)
    at_once = share.max_concurrent_trials or int(min(fits))
    size = spec.budget.population if isinstance(spec.budget.population, int) else 1
    return max(1, min(at_once, math.ceil(remaining / size)))


def train_population(config: dict[str, Any], plan: SweepPlan) -> None:
    """Run population ``config[POPULATION_INDEX]`` of the sweep ``plan`` (inside a Ray worker)
    until the study holds its target, reporting each member trial as it ends.

    The worker runs in a thread of its own and hands the ended trials over a queue: its
    trials end in Optuna's threads, and Tune takes results from the trainable's thread.
    Between members a progress result goes to Tune every :data:`PROGRESS_SECONDS`, since
    Tune can stop a trial only when it reports; stopped (Ctrl-C, a Tune stopper), the
    population asks its members to checkpoint at the end of their segments and fail, as an
    Optuna worker does on SIGTERM. Members whose process Tune ends first stay RUNNING
    until their heartbeats go stale; both kinds are retried from their newest checkpoints.
    """
    ended: queue.Queue[optuna.trial.FrozenTrial | BaseException | None] = queue.Queue()

    def work() -> None:
        quiet_interrupted_trials()
        try:
            run_worker(
                plan,
                config[POPULATION_INDEX],
                threads=max(1, int(plan.spec.ray.cpus_per_trial)),
                n_trials=plan.spec.n_trials,
                callbacks=[lambda study, trial: ended.put(trial)],
            )
        except BaseException as error:  # raised again in the trainable's thread, for Tune
            ended.put(error)
        else:
            ended.put(None)

    shutdown.request_stop(None)  # an actor that Tune reuses starts without the last one's stop
    worker = threading.Thread(target=work, name=f"population-{config[POPULATION_INDEX]}", daemon=True)
    worker.start()
    members_ended = 0
    try:
        while True:
            try:
                item = ended.get(timeout=PROGRESS_SECONDS)
            except queue.Empty:
                tune.report({"members_ended": members_ended})
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            members_ended += 1
            tune.report(member_result(item, members_ended, plan.spec.objective))
    except SystemExit:  # how Tune's report stops a trial
        shutdown.request_stop(signal.SIGTERM)
        worker.join(timeout=shutdown.STOP_GRACE_SECONDS)
        raise


def member_result(trial: optuna.trial.FrozenTrial, members_ended: int, objective: str) -> dict[str, Any]:
    """The Tune result of a population when its member ``trial`` ends: which trial, its
    state and outcome (as in the study), and how many of its members have ended."""
    result = {key: trial.user_attrs[key] for key in OUTCOME_KEYS if trial.user_attrs.get(key) is not None}
    if trial.value is not None:  # the study's objective, as told to Optuna
        result[objective] = trial.value
    return {"trial": trial.number, "state": trial.state.name, **result, "members_ended": members_ended}
