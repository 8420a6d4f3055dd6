"""A study read back for display: one flat record per trial, and curves thinned for plots.

Figures, the HTML report and the dashboard all read a study through these functions,
so each view shows the same numbers: what the trial was (parameters), what the forecast
said at the probe (probability, decision, reason, features) and what happened
(outcome, grok step, steps trained).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import optuna
import sqlalchemy as sa
from optuna.distributions import json_to_distribution
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from grokforecast.sweep.plan import stored_spec
from grokforecast.sweep.storage import curves_table, rdb_storage, read_curves
from grokforecast.vocabulary import DECISION_ATTR

#: Outcomes a trial can have, in legend order, with the colour every view gives them.
OUTCOME_COLORS = {
    "grokked": "#2ca02c",
    "kept, did not grok": "#ff7f0e",
    "pruned": "#8c8c8c",
    "diverged": "#d62728",
    "running": "#1f77b4",
    "failed": "#000000",
}
#: Points a displayed curve keeps at most (min and max per bucket keep its oscillations).
DISPLAY_POINTS = 600


@dataclass(frozen=True)
class TrialView:
    number: int
    state: TrialState
    params: dict[str, Any]
    value: float | None
    outcome: str
    steps_trained: int
    grokked: bool
    t2: int | None
    t4: int | None
    final_val_acc: float | None
    #: The standing decision: the probe's, or the later rung's that pruned the trial.
    probability: float | None
    decision: str | None
    decided_at: int | None
    #: The step of the trial's probe, where its decision was made there (None after a rung's).
    probe_step: int | None
    reason: str | None
    #: Every forecast feature of the standing decision, and the logit contributions of the main ones.
    features: dict[str, float] = field(default_factory=dict)
    contributions: dict[str, float] = field(default_factory=dict)
    #: The calibration that forecast (``full+hyperparameters``, ...), and the study model's
    #: state when it decided (empty while the shipped forecaster decides alone).
    forecaster: str | None = None
    study_model: dict[str, float] = field(default_factory=dict)

    @property
    def activity(self) -> float | None:
        """log10 Hjorth activity of the detrended log training loss over the window the
        standing decision read (the probe's, or a rung's)."""
        return self.features.get("log_activity")


@dataclass(frozen=True)
class StudyView:
    name: str
    direction: str
    probe_steps: int | None
    full_steps: int | None
    trials: list[TrialView]

    def finished(self) -> list[TrialView]:
        return [t for t in self.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]

    def trial(self, number: int) -> TrialView:
        for t in self.trials:
            if t.number == number:
                return t
        raise KeyError(f"study {self.name!r} has no trial {number}")

    def study_model(self) -> TrialView | None:
        """The newest trial decided by the study model (its record holds the model's state
        then), or None while the shipped forecaster decides alone."""
        learned = [t for t in self.trials if t.study_model]
        return max(learned, key=lambda t: t.number) if learned else None

    def steps_spent(self) -> int:
        return sum(t.steps_trained for t in self.finished())

    def steps_unpruned(self) -> int:
        return len(self.finished()) * (self.full_steps or 0)


def load_study_view(study: optuna.Study) -> StudyView:
    """Every trial of ``study`` as a :class:`TrialView`, with the budget of its study file.

    On an SQL storage only the columns the views show are read (no intermediate values:
    a 1,000-trial study holds ~10^5 of them); other storages go through Optuna.
    """
    spec = stored_spec(study)
    direction = study.direction.name.lower() if len(study.directions) == 1 else "multi-objective"
    storage = rdb_storage(study)
    if storage is not None:
        trials = list(_rdb_trial_views(storage.engine, study._study_id))
    else:
        trials = [trial_view(t) for t in study.get_trials(deepcopy=False)]
    return StudyView(
        name=study.study_name,
        direction=direction,
        probe_steps=spec.budget.probe_steps if spec else None,
        full_steps=spec.budget.full_steps if spec else None,
        trials=trials,
    )


def trial_view(trial: FrozenTrial) -> TrialView:
    return _view(
        trial.number,
        trial.state,
        dict(trial.params),
        trial.value if trial.state is TrialState.COMPLETE else None,
        trial.user_attrs,
        trial.last_step,
    )


def _view(
    number: int,
    state: TrialState,
    params: dict[str, Any],
    value: float | None,
    attrs: dict[str, Any],
    last_step: int | None,
) -> TrialView:
    # Attributes are anyone's data (a user's own objective may set them): read defensively.
    decision = attrs.get(DECISION_ATTR)
    decision = decision if isinstance(decision, dict) else {}
    steps = _number(attrs.get("steps_trained"))
    return TrialView(
        number=number,
        state=state,
        params=params,
        value=value,
        outcome=_outcome(state, attrs),
        # A running trial has no steps_trained yet: its last report tells how far it is.
        steps_trained=int(steps) if steps is not None else last_step or 0,
        grokked=attrs.get("grokked") is True,
        t2=_step(attrs.get("t2")),
        t4=_step(attrs.get("t4")),
        final_val_acc=_number(attrs.get("final_val_acc")),
        probability=_number(decision.get("probability")),
        decision=_text(decision.get("decision")),
        decided_at=_step(decision.get("step")),
        probe_step=_step(decision.get("step")) if not decision.get("rung") else None,
        reason=_text(decision.get("reason")),
        features=_numbers(decision.get("features")),
        contributions=_numbers(decision.get("main_features")),
        forecaster=_text(decision.get("forecaster")),
        study_model=_numbers(decision.get("study_model")),
    )


def _number(value: Any) -> float | None:
    """``value`` as a finite float, else None (a string, a NaN, a list...)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _step(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _numbers(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in ((k, _number(v)) for k, v in value.items()) if v is not None}


def _rdb_trial_views(engine: sa.Engine, study_id: int) -> Iterator[TrialView]:
    """The trials of an RDB study, read column by column from Optuna's tables (one
    connection, so a sweep writing meanwhile shows either before or after a change)."""
    trials = models.TrialModel.__table__
    params = models.TrialParamModel.__table__
    values = models.TrialValueModel.__table__
    attrs = models.TrialUserAttributeModel.__table__
    reports = models.TrialIntermediateValueModel.__table__
    ids = sa.select(trials.c.trial_id).where(trials.c.study_id == study_id).scalar_subquery()

    with engine.connect() as connection:

        def by_trial(
            table: sa.Table, *columns: sa.Column, where: sa.ColumnElement[bool] | None = None
        ) -> dict[int, list[sa.Row]]:
            query = sa.select(table.c.trial_id, *columns).where(table.c.trial_id.in_(ids))
            rows: dict[int, list[sa.Row]] = defaultdict(list)
            for row in connection.execute(query if where is None else query.where(where)):
                rows[row.trial_id].append(row)
            return rows

        params_of = by_trial(params, params.c.param_name, params.c.param_value, params.c.distribution_json)
        value_of = by_trial(values, values.c.value, values.c.value_type, where=values.c.objective == 0)
        attrs_of = by_trial(attrs, attrs.c.key, attrs.c.value_json)
        last_steps = dict(
            connection.execute(
                sa.select(reports.c.trial_id, sa.func.max(reports.c.step))
                .where(reports.c.trial_id.in_(ids))
                .group_by(reports.c.trial_id)
            ).all()
        )
        rows = connection.execute(
            sa.select(trials.c.trial_id, trials.c.number, trials.c.state)
            .where(trials.c.study_id == study_id)
            .order_by(trials.c.number)
        ).all()
    for trial_id, number, state in rows:
        objective = value_of.get(trial_id)
        yield _view(
            number,
            state,
            {
                r.param_name: _distribution(r.distribution_json).to_external_repr(r.param_value)
                for r in params_of.get(trial_id, [])
            },
            models.TrialValueModel.stored_repr_to_value(objective[0].value, objective[0].value_type)
            if objective and state is TrialState.COMPLETE
            else None,
            {r.key: json.loads(r.value_json) for r in attrs_of.get(trial_id, [])},
            last_steps.get(trial_id),
        )


#: A study's parameters share a few distributions: parse each JSON text once.
_distribution = cache(json_to_distribution)


def _outcome(state: TrialState, attrs: dict[str, Any]) -> str:
    if state is TrialState.RUNNING or state is TrialState.WAITING:
        return "running"
    if state is TrialState.FAIL:
        return "failed"
    if attrs.get("stopped") == "diverged" or attrs.get("diverged_at") is not None:
        return "diverged"
    if state is TrialState.PRUNED:
        return "pruned"
    return "grokked" if attrs.get("grokked") is True else "kept, did not grok"


def display_curves(
    engine: sa.Engine,
    study_name: str,
    trial_numbers: list[int],
    max_points: int = DISPLAY_POINTS,
) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The curves of the given trials only, each thinned to about ``max_points`` points
    (none for a study written by plain Optuna, which has no curves table)."""
    if not sa.inspect(engine).has_table(curves_table.name):
        return {}
    curves = read_curves(engine, study_name, trial_numbers)
    return {
        number: {name: thin(steps, values, max_points) for name, (steps, values) in by_series.items()}
        for number, by_series in curves.items()
    }


def thin(
    steps: np.ndarray, values: np.ndarray, max_points: int = DISPLAY_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """At most ~``max_points`` points of a curve for a log-step axis: buckets spaced evenly
    in log(step + 1), each keeping its first, lowest and highest point, so a thinned loss
    curve keeps the envelope of its oscillations (the forecast's signal) and its spikes.

    >>> steps = np.arange(10_000); values = np.sin(steps / 3.0)
    >>> s, v = thin(steps, values, 300)
    >>> len(s) <= 300, bool(v.min() == values.min()), bool(v.max() == values.max())
    (True, True, True)
    """
    if len(steps) <= max_points:
        return steps, values
    buckets = max(1, (max_points - 1) // 3)
    edges = np.unique(np.geomspace(1, len(steps), buckets + 1).astype(int) - 1)
    starts, ends = edges[:-1], np.append(edges[1:-1], len(steps))
    keep = set()
    for start, end in zip(starts, ends, strict=True):
        window = values[start:end]
        finite = np.isfinite(window)
        keep.add(int(start))
        if finite.any():
            keep.add(int(start + np.flatnonzero(finite)[np.argmin(window[finite])]))
            keep.add(int(start + np.flatnonzero(finite)[np.argmax(window[finite])]))
    keep.add(len(steps) - 1)
    index = np.fromiter(sorted(keep), dtype=int)
    return steps[index], values[index]
