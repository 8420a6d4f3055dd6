"""The study of a sweep in its database: created once, joined by every worker and backend.

Both backends sample from and record into the same Optuna study; only who runs the
trials differs (Optuna workers, or Ray Tune).
"""

from __future__ import annotations

import hashlib
from typing import Any

import optuna
from optuna.trial import TrialState

from grokforecast.errors import ConfigError, GrokforecastError
from grokforecast.sweep.plan import SweepPlan
from grokforecast.sweep.spec import INT_SETTINGS, Choices, StudySpec, parse_study_text
from grokforecast.sweep.storage import display_url
from grokforecast.vocabulary import SPEC_ATTR, SPEC_FILE_ATTR

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def sampler_seed(seed: int | None, worker_index: int, history: int) -> int | None:
    """The seed of a worker's sampler: a function of the study file's seed, the worker and
    how many trials the study held when it joined. Workers draw distinct sequences, and a
    resumed or added worker continues the study instead of replaying the draws of the
    worker that first ran it (which repeated parameter sets after every resume). The first
    worker of a new study takes the file's seed as it is."""
    if seed is None or (worker_index == 0 and history == 0):
        return seed
    digest = hashlib.sha256(f"{seed}:{worker_index}:{history}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_sampler(spec: StudySpec, worker_index: int = 0, history: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded per worker and per the study's ``history`` (its number of
    trials when the worker joins: :func:`sampler_seed`)."""
    seed = sampler_seed(spec.sampler.seed, worker_index, history)
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


def create_study(plan: SweepPlan, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create the study, or load it if it exists (then the spec must be the same study's)."""
    spec = plan.spec
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage or plan.open_storage(),
        direction=spec.study_direction,
        sampler=make_sampler(spec),
        load_if_exists=True,
    )
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        study.set_user_attr(SPEC_ATTR, plan.spec_text)
        study.set_user_attr(SPEC_FILE_ATTR, plan.spec_path.name)
    elif not _same_search(stored, spec):
        raise GrokforecastError(
            f"study {spec.name!r} in {display_url(plan.storage_url)} was made from a study file with another "
            f"search space or budget; give {plan.spec_path} a new name or use the original file"
        )
    return study


def _same_search(stored_text: str, spec: StudySpec) -> bool:
    try:
        stored = parse_study_text(stored_text, "the stored study file")
    except ConfigError:
        return False
    # How many trials a worker trains at once changes no trial: a resume may choose another.
    same_budget = stored.budget.model_copy(update={"population": spec.budget.population}) == spec.budget
    return (stored.search, stored.train) == (spec.search, spec.train) and same_budget


def load_study(
    plan: SweepPlan,
    worker_index: int = 0,
    storage: optuna.storages.BaseStorage | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Join the plan's existing study (as worker ``worker_index``, with ``pruner``)."""
    try:
        study = optuna.load_study(
            study_name=plan.spec.name, storage=storage or plan.open_storage(), pruner=pruner
        )
    except KeyError:
        raise GrokforecastError(
            f"no study {plan.spec.name!r} in {display_url(plan.storage_url)}; "
            f"start it with: grokforecast sweep {plan.spec_path}"
        ) from None
    study.sampler = make_sampler(plan.spec, worker_index, history=len(study.get_trials(deepcopy=False)))
    return study


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def suggest(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """Sample every setting of the study's search space for ``trial``."""
    params: dict[str, Any] = {}
    for name, dist in spec.search.items():
        if isinstance(dist, Choices):
            params[name] = trial.suggest_categorical(name, dist.choices)
        elif name in INT_SETTINGS:
            step = int(dist.step or 1)
            params[name] = trial.suggest_int(name, int(dist.low), int(dist.high), step=step, log=dist.log)
        else:
            params[name] = trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return params
