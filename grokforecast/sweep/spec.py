"""Study files: what a sweep searches, on which workload, with which budget and pruner.

A study file is TOML, validated by pydantic; any mistake (an unknown key, a wrong type,
``low > high``, a log range through zero) is one line naming the file and the key::

    name = "quickstart"
    n_trials = 16
    # storage = "postgresql+psycopg://user@host/db"   default: sqlite:///runs/<name>.db

    [sampler]
    kind = "tpe"                  # tpe, random, grid, qmc
    seed = 0

    [train]                       # fixed TrainConfig settings
    workload = "modular_mlp"
    workload_options = { p = 59 }

    [search]                      # the search space; any TrainConfig setting
    lr = { low = 1e-3, high = 1e-2, log = true }
    weight_decay = { low = 0.1, high = 3.0, log = true }
    data_fraction = { low = 0.3, high = 0.7 }
    grokfast = { choices = ["none", "ema"] }

    [budget]
    probe_steps = 150             # every trial trains this far, then the forecast decides
    rung_steps = [1000]           # a kept trial is judged again here (default: 25 and 50 %; [] for none)
    full_steps = 2000             # kept trials continue to here
    hold_steps = 200              # a trial that held the grok threshold this long ends early
    population = 1                # trials a worker trains at once, as one stacked model ("auto": measured)

    [pruner]                      # HjorthPruner settings; enabled = false runs every trial
    kind = "hjorth"               # or "median": Optuna's MedianPruner on val acc (for comparison)
    threshold = 0.2
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grokforecast.core.policy import SECOND_LOOK_SHARES, PolicySettings
from grokforecast.errors import ConfigError
from grokforecast.training.config import TrainConfig
from grokforecast.vocabulary import DEFAULT_GROK_THRESHOLD

#: Objectives a study can optimize, with the direction each implies.
OBJECTIVES: dict[str, str] = {
    "final_val_acc": "maximize",
    "best_val_acc": "maximize",
    "final_val_loss": "minimize",
}

#: The TrainConfig setting a study sets in [budget] instead.
_NOT_IN_TRAIN = frozenset({"steps"})
TRAIN_SETTINGS = frozenset(f.name for f in fields(TrainConfig)) - _NOT_IN_TRAIN
#: Settings sampled as integers.
INT_SETTINGS = frozenset(f.name for f in fields(TrainConfig) if f.type in ("int", "int | None"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """A numeric range; integer settings (``warmup_steps``, ``batch_size``, ...) sample integers."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    grid: list[float] | None = None

    @model_validator(mode="after")
    def _check(self) -> Range:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low={self.low} and high={self.high} must be finite")
        if self.low > self.high:
            raise ValueError(f"low={self.low} is greater than high={self.high}; swap them")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range must be > 0 but low={self.low}; raise low or set log = false")
        if self.log and self.step is not None:
            raise ValueError("step and log = true cannot be combined (Optuna); drop one")
        if self.grid is not None and any(not self.low <= v <= self.high for v in self.grid):
            raise ValueError(f"grid={self.grid} has values outside [{self.low}, {self.high}]")
        return self


class Choices(_Strict):
    choices: list[str | int | float | bool | None] = Field(min_length=1)


Distribution = Range | Choices


class SamplerSpec(_Strict):
    kind: Literal["tpe", "random", "grid", "qmc"] = "tpe"
    seed: int | None = 0


def default_rung_steps(probe_steps: int, full_steps: int) -> list[int]:
    """The rungs of a budget that names none: the second look's shares of ``full_steps``
    (:data:`~grokforecast.core.policy.SECOND_LOOK_SHARES`) that lie after ``probe_steps``.

    >>> default_rung_steps(150, 2000), default_rung_steps(600, 2000), default_rung_steps(1200, 2000)
    ([500, 1000], [1000], [])
    """
    steps = (round(share * full_steps) for share in SECOND_LOOK_SHARES)
    return [step for step in steps if probe_steps < step < full_steps]


class BudgetSpec(_Strict):
    probe_steps: Annotated[int, Field(ge=1)]
    full_steps: Annotated[int, Field(ge=1)]
    #: Steps after the probe at which a kept trial is judged again (the second look);
    #: :func:`default_rung_steps` where the file names none, ``[]`` for none.
    rung_steps: list[int] = []
    hold_steps: Annotated[int, Field(ge=0)] = 200
    checkpoint_every: Annotated[int, Field(ge=1)] = 500
    #: Keep a finished trial's last checkpoint (to continue or inspect it) instead of removing it.
    keep_checkpoints: bool = False
    #: Snapshots a kept trial keeps for `grokforecast inspect` (:mod:`grokforecast.inside.snapshots`):
    #: at each 1/snapshots of its budget, plus its probe and grok steps; 0 keeps none.
    snapshots: Annotated[int, Field(ge=0)] = 4
    report_every: Annotated[int, Field(ge=1)] = 50
    #: Trials a worker trains at once as one stacked model (:mod:`grokforecast.sweep.populations`).
    population: Annotated[int, Field(ge=1)] | Literal["auto"] = 1

    @model_validator(mode="before")
    @classmethod
    def _default_rungs(cls, table: Any) -> Any:
        if not isinstance(table, dict) or "rung_steps" in table:
            return table
        probe, full = table.get("probe_steps"), table.get("full_steps")
        if not (isinstance(probe, int) and isinstance(full, int)):
            return table  # a missing or mistyped budget: the field checks name it
        return {**table, "rung_steps": default_rung_steps(probe, full)}

    @model_validator(mode="after")
    def _check(self) -> BudgetSpec:
        if self.probe_steps >= self.full_steps:
            raise ValueError(
                f"probe_steps={self.probe_steps} must be below full_steps={self.full_steps}; "
                "the probe is the short start of a full run"
            )
        steps = self.judged_at
        if any(a >= b for a, b in zip(steps, [*steps[1:], self.full_steps], strict=True)):
            raise ValueError(
                f"rung_steps={self.rung_steps} must lie between probe_steps={self.probe_steps} and "
                f"full_steps={self.full_steps}, in increasing order"
            )
        return self

    @property
    def judged_at(self) -> tuple[int, ...]:
        """The steps at which the stopper judges a trial: the probe, then the later rungs."""
        return (self.probe_steps, *self.rung_steps)


class PrunerSpec(_Strict):
    """The ``[pruner]`` table: the stopping policy's options (:class:`PolicySettings`, whose
    defaults and checks these are), or Optuna's MedianPruner for comparison."""

    enabled: bool = True
    #: "hjorth": forecast at the probe (grokforecast's pruner); "median": Optuna's
    #: MedianPruner on the validation accuracy after the probe, for comparison.
    kind: Literal["hjorth", "median"] = "hjorth"
    n_startup_trials: Annotated[int, Field(ge=0)] = 5
    threshold: float = PolicySettings.threshold
    keep_top: float | None = PolicySettings.keep_top
    #: ``false`` in a study file: the threshold from the first trial (TOML has no None).
    warm_up_keep_top: float | Literal[False] = PolicySettings.warm_up_keep_top
    n_min_probed: int = PolicySettings.n_min_probed
    exploration: float = PolicySettings.exploration
    recalibrate: bool = PolicySettings.recalibrate
    min_calibration_trials: int = PolicySettings.min_calibration_trials
    rung_prune_share: float = PolicySettings.rung_prune_share
    fitted_without: tuple[str, ...] = PolicySettings.fitted_without
    seed: int = PolicySettings.seed

    @model_validator(mode="after")
    def _check(self) -> PrunerSpec:
        self.policy_settings(probe_step=1)  # raises ConfigError (a ValueError) naming the option
        return self

    def policy_settings(
        self, probe_step: int, grok_threshold: float = DEFAULT_GROK_THRESHOLD, rungs: tuple[int, ...] = ()
    ) -> PolicySettings:
        options = {
            **self.model_dump(),
            "probe_step": probe_step,
            "grok_threshold": grok_threshold,
            "rungs": rungs,
        }
        if options["warm_up_keep_top"] is False:
            options["warm_up_keep_top"] = None
        return PolicySettings.of(options)


class StorageSpec(_Strict):
    heartbeat_interval: Annotated[int, Field(ge=1)] = 20
    grace_period: Annotated[int, Field(ge=2)] | None = None
    max_retry: Annotated[int, Field(ge=0)] = 3

    @property
    def stale_after(self) -> int:
        """Seconds without a heartbeat after which a trial's worker counts as dead
        (``grace_period``, by default twice the interval, as Optuna takes it)."""
        return self.grace_period or 2 * self.heartbeat_interval


class RaySpec(_Strict):
    """Resources of one trial on the Ray backend (fractional GPUs pack small models)."""

    cpus_per_trial: Annotated[float, Field(gt=0)] = 1.0
    gpus_per_trial: Annotated[float, Field(ge=0)] = 0.0
    max_concurrent_trials: Annotated[int, Field(ge=1)] | None = None


class StudySpec(_Strict):
    """A validated study file."""

    name: str
    n_trials: Annotated[int, Field(ge=1)]
    storage: str | None = None
    objective: Literal["final_val_acc", "best_val_acc", "final_val_loss"] = "final_val_acc"
    direction: Literal["maximize", "minimize"] | None = None
    checkpoint_dir: str | None = None
    sampler: SamplerSpec = SamplerSpec()
    train: dict[str, Any] = {}
    search: dict[str, Distribution]
    budget: BudgetSpec
    pruner: PrunerSpec = PrunerSpec()
    heartbeat: StorageSpec = StorageSpec()
    ray: RaySpec = RaySpec()

    @field_validator("name")
    @classmethod
    def _name_is_a_file_name(cls, name: str) -> str:
        """The name becomes file names (the default database, checkpoints, reports)."""
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
            raise ValueError(
                f"{name!r} may hold only letters, digits, '_', '-' and '.' (not first), "
                'as it names files; e.g. name = "modular-add-sweep"'
            )
        return name

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        for section, names in (("train", self.train), ("search", self.search)):
            unknown = sorted(set(names) - TRAIN_SETTINGS)
            if unknown:
                raise ValueError(
                    f"{section}.{unknown[0]} is not a training setting; choose from {sorted(TRAIN_SETTINGS)}"
                )
        if "grok_threshold" in self.search:
            raise ValueError(
                "search.grok_threshold labels outcomes and cannot be searched; set it in [train]"
            )
        both = sorted(set(self.train) & set(self.search))
        if both:
            raise ValueError(f"{both[0]} is both fixed in [train] and searched in [search]; keep one")
        if not self.search:
            raise ValueError("[search] is empty; name at least one setting to search")
        if self.direction is not None and self.direction != OBJECTIVES[self.objective]:
            raise ValueError(
                f"direction={self.direction!r} contradicts objective={self.objective!r}, "
                f"which is {OBJECTIVES[self.objective]}d; drop direction"
            )
        for name, dist in self.search.items():
            if (
                name in INT_SETTINGS
                and isinstance(dist, Range)
                and not (dist.low.is_integer() and dist.high.is_integer())
            ):
                raise ValueError(f"search.{name} is an integer setting; low and high must be integers")
        if self.sampler.kind == "grid":
            ungridded = [n for n, d in self.search.items() if not isinstance(d, Choices) and d.grid is None]
            if ungridded:
                raise ValueError(f"the grid sampler needs search.{ungridded[0]}.grid = [...] (or choices)")
        return self

    @property
    def study_direction(self) -> str:
        return OBJECTIVES[self.objective]

    @property
    def grok_threshold(self) -> float:
        """The validation accuracy that counts as grokked in this study."""
        return float(self.train.get("grok_threshold", DEFAULT_GROK_THRESHOLD))

    def policy_settings(self) -> PolicySettings:
        """The stopping policy of this study: ``[pruner]``, judged at ``probe_steps`` and at
        ``rung_steps``, with the study's grok threshold."""
        budget = self.budget
        return self.pruner.policy_settings(budget.probe_steps, self.grok_threshold, tuple(budget.rung_steps))

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///runs/{self.name}.db"

    def train_config(self, params: dict[str, Any]) -> TrainConfig:
        """The trial's TrainConfig: fixed settings, sampled ones, and the full budget."""
        return TrainConfig.from_dict({**self.train, **params, "steps": self.budget.full_steps})


def load_study_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file; every problem is one line naming file and key."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"no study file at {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    spec = parse_study_text(text, str(path))
    try:
        middle = _midpoint(spec)
        for name, value in _extremes(spec):  # every end of every range: a trial may draw it
            try:
                spec.train_config({**middle, name: value})
            except ConfigError as error:
                raise ConfigError(f"search.{name} reaches {value!r}, where {error}") from None
        config = spec.train_config(middle)
        # Build the workload once (data table and model, no training): a bad workload
        # option (an unknown op, p not prime for division) fails here, not in trial 0.
        from grokforecast.training.cpu_process import on_a_passing_thread
        from grokforecast.training.workloads import problem_for

        on_a_passing_thread(problem_for, config)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return spec


def parse_study_text(text: str, source: str) -> StudySpec:
    """Validate a study file's text (``source`` names it in messages): the file itself, or
    the copy a study database keeps."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source} is not valid TOML: {error}") from None
    try:
        return StudySpec.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: {'; '.join(_problems(error))}") from None


def _problems(error: ValidationError) -> list[str]:
    """Every problem of a study file, one phrase each; a misspelled key is named with the
    key it resembles (and that key is then not also reported missing)."""
    problems = error.errors()
    unknown = [p["loc"] for p in problems if p["type"] == "extra_forbidden"]
    suggestions = {loc: _closest_key(loc) for loc in unknown}
    meant = {(*loc[:-1], suggestion) for loc, suggestion in suggestions.items() if suggestion}
    phrases = []
    for problem in problems:
        loc = problem["loc"]
        if problem["type"] == "missing" and tuple(loc) in meant:
            continue
        location = ".".join(str(part) for part in loc if not _is_union_branch(part))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            suggestion = suggestions[loc]
            message = (
                f"unknown key; did you mean {suggestion}?"
                if suggestion
                else (f"unknown key; valid keys here: {', '.join(_keys_at(loc[:-1]))}")
            )
        phrases.append(f"{location}: {message}" if location else message)
    return phrases


def _keys_at(location: tuple[Any, ...]) -> list[str]:
    """The keys a study file may have in the table at ``location`` (top level: ``()``)."""
    model: type[BaseModel] = StudySpec
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _closest_key(location: tuple[Any, ...]) -> str | None:
    """The valid key most like the unknown one at ``location``, if any is close."""
    matches = difflib.get_close_matches(str(location[-1]), _keys_at(location[:-1]), n=1, cutoff=0.7)
    return matches[0] if matches else None


def _is_union_branch(part: Any) -> bool:
    """pydantic's names for the branch of a union that failed, e.g. ``function-after[...]``."""
    return isinstance(part, str) and (part in ("Range", "Choices") or "[" in part)


def _extremes(spec: StudySpec) -> list[tuple[str, Any]]:
    """Each searched setting at each end of its range (every value of a choice)."""
    ends: list[tuple[str, Any]] = []
    for name, dist in spec.search.items():
        if isinstance(dist, Choices):
            ends += [(name, choice) for choice in dist.choices]
        else:
            ends += [(name, round(end) if name in INT_SETTINGS else end) for end in (dist.low, dist.high)]
    return ends


def _midpoint(spec: StudySpec) -> dict[str, Any]:
    """One point of the search space, to check the fixed settings before any trial runs."""
    point: dict[str, Any] = {}
    for name, dist in spec.search.items():
        if isinstance(dist, Choices):
            point[name] = dist.choices[0]
        else:
            middle = math.sqrt(dist.low * dist.high) if dist.log else (dist.low + dist.high) / 2
            point[name] = round(middle) if name in INT_SETTINGS else middle
    return point
