"""``GrokForecastScheduler``: the stopping policy as a Ray Tune trial scheduler.

The Ray Tune counterpart of :class:`~grokforecast.HjorthPruner`, over the same
:class:`~grokforecast.core.policy.StoppingPolicy`: every trial runs to the probe step,
the forecast reads its curves so far, and the trial is stopped there when it says the run
will not grok; otherwise it is never stopped. Written in the manner of Ray's
``median_stopping_rule.py`` (a ``FIFOScheduler`` that answers ``on_trial_result`` and
learns in ``on_trial_complete``); this module only translates Tune's results into a
:class:`~grokforecast.history.History` and the verdict into ``STOP`` or ``CONTINUE``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from grokforecast.backends.ray.state import SavesStateToFile
from grokforecast.core.decision import Decision, DecisionRecord, Probe
from grokforecast.core.policy import PolicySettings, StoppingPolicy, StudyContext
from grokforecast.core.study_model import Outcome
from grokforecast.forecast.forecaster import GrokForecaster
from grokforecast.history import History, hyperparameters_from
from grokforecast.vocabulary import CURVE_GROUPS, INTERVAL_SUFFIX, TRIAL_NUMBER


class GrokForecastScheduler(SavesStateToFile, FIFOScheduler):
    """Stop, at the probe step, the Tune trials forecast not to grok.

    Each result may carry any of ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``
    and ``weight_norm`` at the step ``result[time_attr]``; a list under
    ``"train_loss_interval"`` (likewise for the others) gives the dense values of the steps
    since the previous result, which is what the paper's spectral signal is computed on.
    At the first result at or after ``probe_step`` the scheduler forecasts from everything
    collected and answers ``STOP`` (forecast below ``threshold``) or ``CONTINUE``; that
    decision stands for the rest of the trial, unless ``rungs`` judge a kept trial again at
    later steps (stopped there when its forecast ranks in the bottom ``rung_prune_share``
    of the trials judged at the same rung). A trial whose ``val_acc`` has already
    reached ``grok_threshold`` by then has grokked and continues whatever the forecast; a
    non-finite value stops a trial at once (it diverged). The hyperparameters ``lr``,
    ``weight_decay`` and ``data_fraction`` are read from the trial's config when present.
    Every option means what it means for :class:`~grokforecast.HjorthPruner`
    (:class:`~grokforecast.core.policy.PolicySettings`).
    A trial that was forecast and ran to its end teaches the scheduler how forecasts turn
    out in this experiment: it grokked when its last result says ``grokked``, or else when
    ``grok_metric`` reached ``grok_value`` in one of its results.

    Add :meth:`callback` to the ``RunConfig`` callbacks: it writes each trial's decision
    into its results, where ``result.json``, ``progress.csv`` and the ``ResultGrid`` show
    it (``grokforecast_decision``: empty before the probe, then ``keep``, ``prune`` or
    ``explore``; ``grokforecast_p_grok``: the forecast, NaN when none was made;
    ``grokforecast_reason``: why), prints each decision once, and saves the scheduler's
    state with the experiment (Tune saves no scheduler state), so that a restored
    experiment (``Tuner.restore``) keeps the decisions already made.

    Example:

        >>> import numpy as np
        >>> from ray import tune
        >>> from grokforecast.backends.ray import GrokForecastScheduler
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
        ...     run_config=tune.RunConfig(verbose=0, callbacks=[scheduler.callback()]),
        ... )
        >>> results = tuner.fit()  # doctest: +SKIP
        >>> [r.metrics["step"] for r in results]  # stopped at step 100, or run to 400  # doctest: +SKIP
        [100, 400]
        >>> [r.metrics["grokforecast_decision"] for r in results]  # doctest: +SKIP
        ['prune', 'keep']

    Args:
        probe_step:
            The decision is made at the first result whose ``time_attr`` is at or after
            this value; before it the scheduler stops only a diverged trial.
        time_attr:
            The result key counting training progress (optimizer steps for grokforecast's
            trainable; ``"training_iteration"`` works for any trainable).
        grok_metric, grok_value:
            A trial whose last result does not say ``grokked`` grokked when
            ``grok_metric`` reached ``grok_value`` (default: ``grok_threshold``) in one of
            its results.
        series, forecaster, threshold, keep_top, warm_up_keep_top, n_min_probed, exploration,
        recalibrate, min_calibration_trials, grok_threshold, rungs, rung_prune_share,
        fitted_without, seed:
            As for :class:`~grokforecast.HjorthPruner`. Exploration is drawn from ``seed``
            and the trial (its Optuna trial number under grokforecast's Ray backend, so
            that both backends draw the same); ``keep_top`` and ``warm_up_keep_top`` rank
            among the trials this scheduler has probed.
    """

    def __init__(
        self,
        probe_step: int,
        *,
        time_attr: str = "step",
        series: str = PolicySettings.series,
        forecaster: GrokForecaster | None = None,
        threshold: float = PolicySettings.threshold,
        keep_top: float | None = PolicySettings.keep_top,
        warm_up_keep_top: float | None = PolicySettings.warm_up_keep_top,
        n_min_probed: int = PolicySettings.n_min_probed,
        exploration: float = PolicySettings.exploration,
        recalibrate: bool = PolicySettings.recalibrate,
        min_calibration_trials: int = PolicySettings.min_calibration_trials,
        grok_threshold: float = PolicySettings.grok_threshold,
        rungs: tuple[int, ...] = PolicySettings.rungs,
        rung_prune_share: float = PolicySettings.rung_prune_share,
        grok_metric: str = "val_acc",
        grok_value: float | None = None,
        fitted_without: tuple[str, ...] = PolicySettings.fitted_without,
        seed: int = PolicySettings.seed,
    ) -> None:
        super().__init__()
        settings = PolicySettings.of(locals())  # every policy keyword, by name
        self.policy = StoppingPolicy(settings, forecaster)
        self.time_attr = time_attr
        self.grok_metric = grok_metric
        self.grok_value = grok_threshold if grok_value is None else grok_value
        # Kept through a trial's error (FIFOScheduler's on_trial_error does nothing): a retry
        # from a checkpoint re-reports only the steps after it.
        self._curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
        self._decisions: dict[str, DecisionRecord] = {}
        self._probes: dict[str, Probe] = {}
        #: The decisions of each kept trial's later rungs, in order.
        self._rung_decisions: dict[str, list[DecisionRecord]] = {}
        #: Each kept trial's forecast at the rungs it was judged at (None: it had grokked).
        self._rung_forecasts: dict[str, dict[int, float | None]] = {}
        self._reached_grok_value: set[str] = set()
        #: What each forecast trial that ran to its end taught, by trial key.
        self._outcomes: dict[str, Outcome] = {}

    @property
    def settings(self) -> PolicySettings:
        return self.policy.settings

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
            f"GrokForecastScheduler: {len(self._decisions)} decided, {stopped} stopped, "
            f"{len(self._outcomes)} finished to learn from."
        )

    # -- the decision ----------------------------------------------------------------

    def decide(self, trial_id: str, result: Mapping[str, Any], config: Mapping[str, Any]) -> str:
        """``STOP`` or ``CONTINUE`` for one result of one trial (Tune calls this per result)."""
        value = result.get(self.grok_metric)
        if value is not None and value >= self.grok_value:
            self._reached_grok_value.add(trial_id)
        earlier = self._decisions.get(trial_id)
        step = result.get(self.time_attr)
        if earlier is not None and not self._judged_again(trial_id, earlier):
            return self._answer(earlier)
        if step is None:
            return TrialScheduler.CONTINUE
        points = _points(result, step)
        curves = self._curves.setdefault(trial_id, defaultdict(list))
        for name, new in points.items():
            curves[name].extend(new)
        if earlier is not None:
            return self._judge_again(trial_id, step, config)
        diverged = self.policy.diverged(History.from_points(points))
        if diverged is not None:
            return self._settle(trial_id, diverged)
        if not self.policy.is_due(step):
            return TrialScheduler.CONTINUE
        history = History.from_points(curves, hyperparameters_from(config))
        context = StudyContext(
            tuple(self._outcomes.values()),
            [p.probability for key, p in self._probes.items() if key != trial_id],
        )
        verdict = self.policy.decide(history, _trial_key(trial_id, config), context, step)
        if verdict.probe is not None:
            self._probes[trial_id] = verdict.probe
        return self._settle(trial_id, verdict.record)

    def _judged_again(self, trial_id: str, record: DecisionRecord) -> bool:
        return self.policy.judged_again(record.decision, len(self._rung_forecasts.get(trial_id, {})))

    def _judge_again(self, trial_id: str, step: int, config: Mapping[str, Any]) -> str:
        """A kept trial at a later rung, if it has reached one it was not judged at."""
        judged = self._rung_forecasts.setdefault(trial_id, {})
        rung = self.policy.rung_due(step, len(judged))
        if rung is None:
            return TrialScheduler.CONTINUE
        history = History.from_points(self._curves[trial_id], hyperparameters_from(config))
        at_rung = [
            forecast
            for key, forecasts in self._rung_forecasts.items()
            if key != trial_id and (forecast := forecasts.get(rung)) is not None
        ]
        verdict = self.policy.judge_again(history, StudyContext(at_rung=at_rung), rung, step)
        judged.update({k: None for k in range(len(judged) + 1, rung)})
        judged[rung] = verdict.rung_forecast
        self._rung_decisions.setdefault(trial_id, []).append(verdict.record)
        return self._settle(trial_id, verdict.record if verdict.stops else self._decisions[trial_id])

    def _settle(self, trial_id: str, record: DecisionRecord) -> str:
        self._decisions[trial_id] = record
        if not self._judged_again(trial_id, record):
            self._curves.pop(trial_id, None)
        return self._answer(record)

    def learn(self, trial_id: str, result: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        """Take in how a trial that ended turned out (Tune calls this with its last result).

        Only a trial whose probe teaches (:attr:`~grokforecast.core.decision.Probe.teaches`)
        does: a stopped trial's outcome is unknown, and one that had grokked by its probe
        ran on whatever the forecast said. Nor does one whose loss diverged (its last
        result has ``diverged_at``), which the study records as pruned, as on the Optuna
        backend, whose pruner never learns from it.
        """
        probe = self._probes.get(trial_id)
        if probe is None or not probe.teaches or result.get("diverged_at") is not None:
            return
        grokked = result.get("grokked")
        if grokked is None:
            grokked = trial_id in self._reached_grok_value
        self.add_outcome(_trial_key(trial_id, config), probe.outcome(bool(grokked)))

    def add_outcome(self, trial: str | int, outcome: Outcome) -> None:
        """Record how ``trial`` (an Optuna trial number, or a Tune id), forecast and run to
        its end, turned out (the Ray backend adds a resumed study's finished trials)."""
        self._outcomes[str(trial)] = outcome

    def decision(self, trial_id: str) -> DecisionRecord | None:
        """The decision made for a trial, with its reason; None before its probe step."""
        return self._decisions.get(trial_id)

    def rung_decisions(self, trial_id: str) -> list[DecisionRecord]:
        """The decisions of a kept trial's later rungs, in order (empty without ``rungs``)."""
        return list(self._rung_decisions.get(trial_id, ()))

    def probe(self, trial_id: str) -> Probe | None:
        """The forecast behind a decision (logit, probability, forecaster), as the Optuna
        pruner stores it; None for a trial not forecast (diverged, or not yet probed)."""
        return self._probes.get(trial_id)

    def _answer(self, record: DecisionRecord) -> str:
        return TrialScheduler.STOP if record.decision is Decision.PRUNE else TrialScheduler.CONTINUE

    # -- state ---------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """The decisions made (at the probe and later rungs), the curves of trials still to
        be judged, and what finished trials taught."""
        return {
            "decisions": dict(self._decisions),
            "probes": dict(self._probes),
            "rung_decisions": {k: list(r) for k, r in self._rung_decisions.items()},
            "rung_forecasts": {k: dict(f) for k, f in self._rung_forecasts.items()},
            "curves": {k: {n: list(p) for n, p in c.items()} for k, c in self._curves.items()},
            "reached_grok_value": set(self._reached_grok_value),
            "outcomes": {k: tuple(o) for k, o in self._outcomes.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._decisions = dict(state["decisions"])
        self._probes = dict(state["probes"])
        # A state saved before the second look existed has none.
        self._rung_decisions = {k: list(r) for k, r in state.get("rung_decisions", {}).items()}
        self._rung_forecasts = {k: dict(f) for k, f in state.get("rung_forecasts", {}).items()}
        self._curves = {k: defaultdict(list, c) for k, c in state["curves"].items()}
        self._reached_grok_value = set(state["reached_grok_value"])
        self._outcomes = {k: Outcome(*o) for k, o in state["outcomes"].items()}

    def callback(self, print_decisions: bool = True) -> Callback:
        """The Tune callback that goes with this scheduler: each trial's decision in its
        results (:data:`DECISION_METRICS`) and, with ``print_decisions``, printed once; and
        this scheduler's state saved with the experiment's."""
        return _SchedulerCallback(self, print_decisions)


#: The result keys the scheduler's callback writes, and their values before the probe.
DECISION_METRICS = {"grokforecast_decision": "", "grokforecast_p_grok": math.nan, "grokforecast_reason": ""}


def decision_metrics(record: DecisionRecord | None) -> dict[str, Any]:
    """A decision as result keys (every key in every result: Tune's CSV fixes its columns
    at the first result)."""
    if record is None:
        return dict(DECISION_METRICS)
    probability = math.nan if record.probability is None else record.probability
    return {
        "grokforecast_decision": record.decision.value,
        "grokforecast_p_grok": probability,
        "grokforecast_reason": record.reason,
    }


class _SchedulerCallback(Callback):
    """Writes a scheduler's decisions into the trials' results (Tune calls its callbacks
    after the scheduler, and before its loggers, on each result), prints each once, and
    carries the scheduler's state through Tune's experiment checkpoints."""

    def __init__(self, scheduler: GrokForecastScheduler, print_decisions: bool) -> None:
        self.scheduler = scheduler
        self.print_decisions = print_decisions
        self._printed: dict[str, DecisionRecord] = {}

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info
    ) -> None:
        record = self.scheduler.decision(trial.trial_id)
        result.update(decision_metrics(record))
        if self.print_decisions and record is not None and self._printed.get(trial.trial_id) != record:
            self._printed[trial.trial_id] = record  # once, and once more if a later rung prunes
            print(f"GrokForecastScheduler: trial {trial.trial_id} {record.reason}", flush=True)

    def get_state(self) -> dict[str, Any]:
        return self.scheduler.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.set_state(state)


def _trial_key(trial_id: str, config: Mapping[str, Any]) -> str:
    """The Optuna trial number a Tune trial stands for, else its Tune id."""
    return str(config.get(TRIAL_NUMBER, trial_id))


def _points(result: Mapping[str, Any], step: int) -> dict[str, list[tuple[int, float]]]:
    """The ``(step, value)`` pairs one result carries: the dense ``<series>_interval``
    values of the steps before ``step``, or the one value at ``step``."""
    points = {}
    for name in CURVE_GROUPS:
        dense = result.get(name + INTERVAL_SUFFIX)
        if dense is not None:
            first = step - len(dense)
            points[name] = [(first + i, float(v)) for i, v in enumerate(dense)]
        elif name in result:
            points[name] = [(step, float(result[name]))]
    return points
