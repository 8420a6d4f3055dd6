"""``StudySearcher``: Optuna's sampler behind Ray Tune, with true trial states.

Ray's stock ``OptunaSearch`` tells Optuna COMPLETE, with a partial value, for a trial a
scheduler stopped, and after ``Tuner.restore`` it fails the trials it resumes. This
searcher asks the sweep's study (in grokforecast's SQL storage) for each trial, and tells
it the truth: PRUNED with the forecast's reason for a trial the
:class:`~grokforecast.GrokForecastScheduler` stopped (or whose loss diverged),
COMPLETE with the objective for a trial that finished, FAIL for one that errored. A trial
stopped without an outcome (the experiment was interrupted) stays RUNNING: a restored
experiment finishes it, and :func:`reconcile` settles whatever is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from grokforecast.backends.ray.scheduler import GrokForecastScheduler
from grokforecast.backends.ray.state import SavesStateToFile
from grokforecast.core.decision import Decision, DecisionRecord
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.reporting import is_reported, objective_series
from grokforecast.sweep.storage import open_storage
from grokforecast.sweep.study import load_study, suggest
from grokforecast.vocabulary import (
    DECISION_ATTR,
    OUTCOME_KEYS,
    PROBE_ATTR,
    RESUMED_FROM_ATTR,
    RUNG_DECISIONS_ATTR,
    STOPPED_ATTR,
    TRIAL_NUMBER,
)


class StudySearcher(SavesStateToFile, Searcher):
    """Sample each Tune trial from the sweep's Optuna study and record its true state.

    Args:
        plan: The sweep (study file and storage URL); the study must exist.
        scheduler: The scheduler whose decisions mark trials PRUNED (None: no pruning).
    """

    def __init__(self, plan: SweepPlan, scheduler: GrokForecastScheduler | None = None) -> None:
        mode = "max" if plan.spec.study_direction == "maximize" else "min"
        super().__init__(metric=plan.spec.objective, mode=mode)
        self.plan = plan
        self.scheduler = scheduler
        self._numbers: dict[str, int] = {}
        self._last_steps: dict[str, int] = {}  # of each trial's latest result
        self._study: optuna.Study | None = None

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            # Tune, not Optuna's heartbeats, looks after crashed trials on this backend.
            self._study = load_study(self.plan, storage=open_storage(self.plan.storage_url))
        return self._study

    # -- Tune's hooks ----------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any]:
        trial = self.study.ask()
        params = suggest(trial, self.plan.spec)
        self._numbers[trial_id] = trial.number
        return {**params, TRIAL_NUMBER: trial.number}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Report the objective's series to Optuna at its stride, as the Optuna path does
        (:mod:`grokforecast.sweep.reporting`)."""
        budget = self.plan.spec.budget
        step = result.get("step")
        if step is not None and is_reported(
            step, self._last_steps.get(trial_id), budget.report_every, budget.judged_at
        ):
            self._report(trial_id, result)
        self._last_steps[trial_id] = step

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number = self._numbers.get(trial_id)
        if number is None:
            return
        if (
            result
            and not error
            and not self.study._storage.get_trial(self._storage_id(number)).state.is_finished()
        ):
            self._report(trial_id, result)  # the run's last value, as the Optuna path reports it
        if self.scheduler is not None and (probe := self.scheduler.probe(trial_id)) is not None:
            self.study._storage.set_trial_system_attr(self._storage_id(number), PROBE_ATTR, probe.to_dict())
        if self.scheduler is not None and (rungs := self.scheduler.rung_decisions(trial_id)):
            records = [record.to_dict() for record in rungs]
            self.study._storage.set_trial_user_attr(self._storage_id(number), RUNG_DECISIONS_ATTR, records)
        decision = self.scheduler.decision(trial_id) if self.scheduler else None
        settle(self.study, number, result, decision, self.plan.spec.objective, error)

    def _report(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """Tell Optuna the objective's series at the result's step (of a running trial)."""
        number, step = self._numbers.get(trial_id), result.get("step")
        value = result.get(objective_series(self.plan.spec.objective))
        if number is not None and step is not None and value is not None:
            self.study._storage.set_trial_intermediate_value(self._storage_id(number), step, value)

    # -- state -------------------------------------------------------------------------

    def _storage_id(self, number: int) -> int:
        return self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)

    def get_state(self) -> dict[str, Any]:
        return {"numbers": dict(self._numbers), "last_steps": dict(self._last_steps)}

    def set_state(self, state: dict[str, Any]) -> None:
        self._numbers = dict(state["numbers"])
        self._last_steps = dict(state.get("last_steps", {}))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_study": None}  # reconnects to the storage on demand


def settle(
    study: optuna.Study,
    number: int,
    result: Mapping[str, Any] | None,
    decision: DecisionRecord | None,
    objective: str,
    error: bool = False,
) -> TrialState | None:
    """Give Optuna trial ``number`` its final state from its last Tune result.

    Returns the state told, or None when the trial has no outcome yet (left RUNNING).
    """
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    if storage.get_trial(trial_id).state.is_finished():
        return None
    result = result or {}
    if decision is not None:
        storage.set_trial_user_attr(trial_id, DECISION_ATTR, decision.to_dict())
    if error:
        study.tell(number, state=TrialState.FAIL)
        return TrialState.FAIL
    stopped_by_forecast = decision is not None and decision.decision is Decision.PRUNE
    if stopped_by_forecast and STOPPED_ATTR not in result:
        result = {**result, **_outcome_when_stopped(result)}
    if STOPPED_ATTR not in result:
        return None
    for key in OUTCOME_KEYS:
        if key in result:
            storage.set_trial_user_attr(trial_id, key, result[key])
    resumed = {key: result.get(f"{RESUMED_FROM_ATTR}_{key}") for key in ("trial", "step")}
    if resumed["step"] is not None:  # as the Optuna backend records a continued trial
        storage.set_trial_user_attr(trial_id, RESUMED_FROM_ATTR, resumed)
    if result[STOPPED_ATTR] == "diverged" and decision is None:
        record = DecisionRecord.diverged("train_loss", result.get("diverged_at"))
        storage.set_trial_user_attr(trial_id, DECISION_ATTR, record.to_dict())
    if stopped_by_forecast or result[STOPPED_ATTR] == "diverged":
        study.tell(number, state=TrialState.PRUNED)
        return TrialState.PRUNED
    study.tell(number, float(result[objective]))
    return TrialState.COMPLETE


def _outcome_when_stopped(result: Mapping[str, Any]) -> dict[str, Any]:
    """The outcome of a trial the scheduler stopped, from the result it stopped at (its
    probe or a later rung)."""
    return {
        STOPPED_ATTR: "pruned",
        "steps_trained": result.get("step"),
        "final_train_acc": result.get("train_acc"),
        "final_val_acc": result.get("val_acc"),
        "final_val_loss": result.get("val_loss"),
        "final_weight_norm": result.get("weight_norm"),
    }
