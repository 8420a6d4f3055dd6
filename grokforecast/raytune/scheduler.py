"""``GrokForecastScheduler``: the forecast as a Ray Tune trial scheduler.

The Ray Tune counterpart of :class:`~grokforecast.HjorthPruner`: every trial runs to the
probe step, the :class:`~grokforecast.GrokForecaster` reads its curves so far, and the
trial is stopped there when the forecast says it will not grok; otherwise it is never
stopped. Like the pruner it explores (lets a few trials the rule would stop run on) and
recalibrates the forecast on the experiment's own finished trials. Written in the manner
of Ray's ``median_stopping_rule.py`` (a ``FIFOScheduler`` that answers
``on_trial_result`` and learns in ``on_trial_complete``).
"""

from __future__ import annotations

import logging
import pickle
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from grokforecast.forecast.features import CURVE_GROUPS, HYPERPARAMETERS
from grokforecast.forecast.forecaster import GrokForecaster, pretrained_inputs_for
from grokforecast.pruning.calibration import Calibration, Outcome, calibration_for, teaches
from grokforecast.pruning.decision import Decision, DecisionRecord, already_grokked, probe_record, settled

logger = logging.getLogger(__name__)

#: A result key ``<series>_interval`` holds that series' value at every step since the
#: previous result (the trainer's dense per-step curve); ``<series>`` alone is one value.
INTERVAL_SUFFIX = "_interval"
#: Config key naming the Optuna trial a Tune trial is (set by grokforecast's Ray backend):
#: exploration draws and outcomes are keyed by it, as the Optuna pruner's are.
TRIAL_NUMBER = "optuna_trial_number"


class GrokForecastScheduler(FIFOScheduler):
    """Stop, once, at the probe step, the Tune trials forecast not to grok.

    Each result may carry any of ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``
    and ``weight_norm`` at the step ``result[time_attr]``; a list under
    ``"train_loss_interval"`` (likewise for the others) gives the dense values of the steps
    since the previous result, which is what the paper's spectral signal is computed on.
    At the first result at or after ``probe_step`` the scheduler forecasts from everything
    collected and answers ``STOP`` (forecast below ``threshold``) or ``CONTINUE``; that
    decision stands for the rest of the trial. A trial whose ``val_acc`` has already
    reached 0.95 by then has grokked and continues whatever the forecast. The
    hyperparameters ``lr``, ``weight_decay`` and ``data_fraction`` are read from the
    trial's config when present.
    A trial that was forecast and ran to its end teaches the scheduler how forecasts turn
    out in this experiment: it grokked when its last result says ``grokked``, or else when
    ``grok_metric`` reached ``grok_value`` in one of its results.

    Tune does not save a scheduler's state with an experiment; add
    :meth:`state_callback` to the ``RunConfig`` callbacks so that a restored experiment
    (``Tuner.restore``) keeps the decisions already made.

    Example:

        >>> import numpy as np
        >>> from ray import tune
        >>> from grokforecast.raytune import GrokForecastScheduler
        >>> def trainable(config):
        ...     rng = np.random.default_rng(0)
        ...     for step in range(10, 410, 10):
        ...         noise = 1 + config["weight_decay"] * 0.1 * np.sin(np.arange(step - 10, step) / 3)
        ...         losses = np.exp(-np.arange(step - 10, step) / 50) * noise + 1e-3
        ...         tune.report({"step": step, "train_loss": losses[-1], "train_loss_interval": list(losses)})
        >>> scheduler = GrokForecastScheduler(probe_step=100)
        >>> tuner = tune.Tuner(
        ...     trainable,
        ...     param_space={"weight_decay": tune.grid_search([0.01, 3.0])},
        ...     tune_config=tune.TuneConfig(scheduler=scheduler),
        ...     run_config=tune.RunConfig(verbose=0, callbacks=[scheduler.state_callback()]),
        ... )
        >>> results = tuner.fit()  # doctest: +SKIP
        >>> [r.metrics["step"] for r in results]  # stopped at step 100, or run to 400  # doctest: +SKIP
        [100, 400]

    Args:
        probe_step:
            The decision is made at the first result whose ``time_attr`` is at or after
            this value; before it the scheduler never stops a trial.
        threshold:
            Stop when the forecast probability of grokking is below this value (the
            HjorthPruner's default; see its ``threshold``).
        time_attr:
            The result key counting training progress (optimizer steps for grokforecast's
            trainable; ``"training_iteration"`` works for any trainable).
        series:
            The series whose shipped calibration is used when the results do not carry
            every curve (``"train_loss"``, ``"val_loss"`` or ``"val_acc"``).
        forecaster:
            A fitted :class:`~grokforecast.GrokForecaster` to use instead of the shipped
            calibrations.
        exploration:
            Probability that a trial the rule would stop runs on anyway (decision
            ``explore``), so that recalibration also sees low-forecast trials; drawn from
            ``seed`` and the trial (its Optuna trial number under grokforecast's Ray
            backend, so that both backends draw the same).
        recalibrate:
            Refit the forecast's probability scale (Platt scaling) on the trials forecast
            and run to their end, once ``min_calibration_trials`` of them with both
            outcomes exist.
        grok_metric, grok_value:
            A trial whose last result does not say ``grokked`` grokked when
            ``grok_metric`` reached ``grok_value`` in one of its results.
        seed:
            Seed of the exploration draws.
    """

    def __init__(
        self,
        probe_step: int,
        threshold: float = 0.2,
        time_attr: str = "step",
        series: str = "train_loss",
        forecaster: GrokForecaster | None = None,
        exploration: float = 0.05,
        recalibrate: bool = True,
        min_calibration_trials: int = 10,
        grok_metric: str = "val_acc",
        grok_value: float = 0.95,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if probe_step < 1:
            raise ValueError(f"probe_step={probe_step} must be at least 1")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold={threshold} must lie in [0, 1]")
        if series not in ("train_loss", "val_loss", "val_acc"):
            raise ValueError(f"series={series!r} must be 'train_loss', 'val_loss' or 'val_acc'")
        if not 0.0 <= exploration <= 1.0:
            raise ValueError(f"exploration={exploration} must lie in [0, 1]")
        if min_calibration_trials < 2:
            raise ValueError(f"min_calibration_trials={min_calibration_trials} must be at least 2")
        self.probe_step = probe_step
        self.threshold = threshold
        self.time_attr = time_attr
        self.series = series
        self.exploration = exploration
        self.recalibrate = recalibrate
        self.min_calibration_trials = min_calibration_trials
        self.grok_metric = grok_metric
        self.grok_value = grok_value
        self.seed = seed
        self._custom_forecaster = forecaster
        self._pretrained: dict[str, GrokForecaster] = {}
        # Kept through a trial's error (FIFOScheduler's on_trial_error does nothing): a retry
        # from a checkpoint re-reports only the steps after it.
        self._curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
        self._decisions: dict[str, DecisionRecord] = {}
        self._probes: dict[str, dict[str, Any]] = {}
        self._reached_grok_value: set[str] = set()
        #: What each forecast trial that ran to its end taught, by trial key.
        self._outcomes: dict[str, Outcome] = {}

    # -- Tune's hooks ----------------------------------------------------------------

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        return self.decide(trial.trial_id, result, trial.config)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.learn(trial.trial_id, result or {}, trial.config)
        self._curves.pop(trial.trial_id, None)
        self._reached_grok_value.discard(trial.trial_id)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._curves.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        stopped = sum(r.decision is Decision.PRUNE for r in self._decisions.values())
        return (
            f"GrokForecastScheduler: {len(self._decisions)} forecast, {stopped} stopped at the "
            f"probe, {len(self._outcomes)} finished to learn from."
        )

    # -- the decision ----------------------------------------------------------------

    def decide(self, trial_id: str, result: Mapping[str, Any], config: Mapping[str, Any]) -> str:
        """``STOP`` or ``CONTINUE`` for one result of one trial (Tune calls this per result)."""
        value = result.get(self.grok_metric)
        if value is not None and value >= self.grok_value:
            self._reached_grok_value.add(trial_id)
        if trial_id in self._decisions:
            return self._answer(self._decisions[trial_id])
        step = result.get(self.time_attr)
        if step is None:
            return TrialScheduler.CONTINUE
        curves = self._curves.setdefault(trial_id, defaultdict(list))
        for name in CURVE_GROUPS:
            dense = result.get(name + INTERVAL_SUFFIX)
            if dense is not None:
                first = step - len(dense)
                curves[name].extend((first + i, float(v)) for i, v in enumerate(dense))
            elif name in result:
                curves[name].append((step, float(result[name])))
        if step < self.probe_step:
            return TrialScheduler.CONTINUE
        record = self._forecast(trial_id, step, config)
        self._decisions[trial_id] = record
        del self._curves[trial_id]
        return self._answer(record)

    def learn(self, trial_id: str, result: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        """Take in how a trial that ended turned out (Tune calls this with its last result).

        Only a trial that was forecast and not stopped by the forecast teaches anything: a
        stopped trial's outcome is unknown, and one that had grokked by its probe ran on
        whatever the forecast said. Nor does one whose loss diverged (its last
        result has ``diverged_at``), which the study records as pruned, as on the Optuna
        backend, whose pruner never learns from it.
        """
        probe = self._probes.get(trial_id)
        if probe is None or not teaches(probe):
            return
        if result.get("diverged_at") is not None:
            return
        grokked = result.get("grokked")
        if grokked is None:
            grokked = trial_id in self._reached_grok_value
        outcome = Outcome(probe["forecaster"], float(probe["logit"]), bool(grokked))
        self.add_outcome(_trial_key(trial_id, config), outcome)

    def add_outcome(self, trial: str | int, outcome: Outcome) -> None:
        """Record how ``trial`` (an Optuna trial number, or a Tune id), forecast and run to
        its end, turned out (the Ray backend adds a resumed study's finished trials)."""
        self._outcomes[str(trial)] = outcome

    def decision(self, trial_id: str) -> DecisionRecord | None:
        """The decision made for a trial, with its reason; None before its probe step."""
        return self._decisions.get(trial_id)

    def probe(self, trial_id: str) -> dict[str, Any] | None:
        """The forecast behind a decision (logit, probability, forecaster), as the Optuna
        pruner stores it; None for a trial not forecast (diverged, or not yet probed)."""
        return self._probes.get(trial_id)

    def _answer(self, record: DecisionRecord) -> str:
        return TrialScheduler.STOP if record.decision is Decision.PRUNE else TrialScheduler.CONTINUE

    def _forecast(self, trial_id: str, step: int, config: Mapping[str, Any]) -> DecisionRecord:
        history = self._history(trial_id, config)
        diverged = [name for name, values in history.items() if _has_non_finite(values)]
        if diverged:
            return DecisionRecord(Decision.PRUNE, step, 0.0, f"non-finite {diverged[0]}", {}, 0)
        key, forecaster = self._forecaster_for(history)
        try:
            assessment = forecaster.assess(history)
        except ValueError as error:
            # Stopping a trial on missing evidence would be worse than letting it run.
            logger.warning(
                "GrokForecastScheduler keeps trial %s without a forecast at step %s: %s; "
                "report more often or raise probe_step",
                trial_id,
                step,
                error,
            )
            return DecisionRecord(Decision.KEEP, step, float("nan"), f"no forecast ({error})", {}, 0)
        logit = assessment.logit
        calibration = self._calibration(key)
        probability = calibration.probability(logit)
        grokked_rule = already_grokked(history)
        rule = grokked_rule or f"threshold {self.threshold:g}"
        stop = grokked_rule is None and probability < self.threshold
        decision = settled(stop, self.seed, _trial_key(trial_id, config), self.exploration)
        self._probes[trial_id] = probe_record(
            decision, logit, probability, key, grokked_at_probe=grokked_rule is not None
        )
        return DecisionRecord.of_forecast(decision, step, probability, rule, assessment, calibration.trials)

    def _calibration(self, forecaster_key: str) -> Calibration:
        if not self.recalibrate:
            return Calibration()
        return calibration_for(self._outcomes.values(), forecaster_key, self.min_calibration_trials)

    def _history(self, trial_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
        history: dict[str, Any] = {}
        for name, points in self._curves[trial_id].items():
            steps, values = zip(*sorted(dict(points).items()), strict=True)
            history[name] = np.asarray(values)
            history[f"{name}_steps"] = np.asarray(steps)
        if all(name in config for name in HYPERPARAMETERS):
            history["hyperparameters"] = {name: config[name] for name in HYPERPARAMETERS}
        return history

    def _forecaster_for(self, history: dict[str, Any]) -> tuple[str, GrokForecaster]:
        if self._custom_forecaster is not None:
            return "custom", self._custom_forecaster
        key = pretrained_inputs_for(history, self.series)
        if key not in self._pretrained:
            self._pretrained[key] = GrokForecaster.pretrained(key)
        return key, self._pretrained[key]

    # -- state ---------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """The decisions made, the curves of trials not yet decided, and what finished
        trials taught."""
        return {
            "decisions": dict(self._decisions),
            "probes": dict(self._probes),
            "curves": {k: {n: list(p) for n, p in c.items()} for k, c in self._curves.items()},
            "reached_grok_value": set(self._reached_grok_value),
            "outcomes": {k: tuple(o) for k, o in self._outcomes.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._decisions = dict(state["decisions"])
        self._probes = dict(state["probes"])
        self._curves = {k: defaultdict(list, c) for k, c in state["curves"].items()}
        # An experiment saved before the scheduler learned from finished trials has neither.
        self._reached_grok_value = set(state.get("reached_grok_value", ()))
        self._outcomes = {k: Outcome(*o) for k, o in state.get("outcomes", {}).items()}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.get_state(), file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.set_state(pickle.load(file))

    def state_callback(self) -> Callback:
        """A Tune callback that saves this scheduler's state with the experiment's state."""
        return _SchedulerState(self)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pretrained"] = {}  # reloaded from the package on demand
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A restored experiment unpickles the scheduler it was started with; one pickled by
        # an earlier grokforecast lacks the later settings, which then take their defaults.
        defaults = GrokForecastScheduler(probe_step=state["probe_step"]).__dict__
        self.__dict__.update({**defaults, **state})


class _SchedulerState(Callback):
    """Carries a scheduler's state through Tune's experiment checkpoints."""

    def __init__(self, scheduler: GrokForecastScheduler) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any]:
        return self.scheduler.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.set_state(state)


def _trial_key(trial_id: str, config: Mapping[str, Any]) -> str:
    """The Optuna trial number a Tune trial stands for, else its Tune id."""
    return str(config.get(TRIAL_NUMBER, trial_id))


def _has_non_finite(values: Any) -> bool:
    return isinstance(values, np.ndarray) and values.dtype.kind == "f" and not np.isfinite(values).all()
