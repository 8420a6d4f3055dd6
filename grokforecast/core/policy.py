"""``StoppingPolicy``: the one rule that judges a trial at its probe step, for every backend.

Given a trial's :class:`~grokforecast.history.History`, its key (the Optuna trial
number, which both backends share) and what the study knows (:class:`StudyContext`), the
policy returns a :class:`Verdict`: a :class:`~grokforecast.core.decision.DecisionRecord`
with its reason, and the :class:`~grokforecast.core.decision.Probe` that later trials
learn from. The Optuna pruner and the Ray Tune scheduler only translate their protocols
into this call, as Ray's ``AsyncHyperBandScheduler`` does over its ``_Bracket``.

The steps of a decision, in order:

1. A history with a NaN or infinite value is pruned: the run diverged (an outcome, not
   a crash). This applies at any step, before the probe too.
2. The forecaster that fits what the history holds reads it (the shipped calibration for
   every curve and the hyperparameters, for every curve, or for the one reported series;
   or the caller's). A history it cannot read (too short, say) keeps the trial, with the
   reason in the record and one warning per policy: stopping on missing evidence would be
   worse than letting it run.
3. The study model updates the forecast with what the study's finished trials taught
   (:mod:`grokforecast.core.study_model`: a Bayesian update of the shipped model).
4. A run whose validation accuracy has reached the study's grok threshold is kept: there
   is nothing left to forecast, and it may be the study's best trial.
5. Otherwise the rule: until the study model has learned, prune outside the
   ``warm_up_keep_top`` fraction of the trials probed so far (by forecast), unless the
   forecast is even odds or better (:data:`KEEP_ODDS`); then prune below
   ``threshold``. With ``keep_top``, always by rank.
6. A trial the rule prunes may be drawn to run on anyway (``exploration``), so that the
   study model sees how low forecasts turn out; the chance shrinks as the study's
   evidence grows (:meth:`StoppingPolicy.exploration_rate`).

A second look (``rungs``): a trial kept at the probe is judged again at each later rung
step (:meth:`StoppingPolicy.judge_again`). The run has grokked by then, and is kept; or
the shipped forecast reads its longer history and the trial is pruned when that forecast
ranks in the bottom ``rung_prune_share`` of the trials judged at the same rung, unless it
is even odds or better (:data:`KEEP_ODDS`, as in the warm-up). By rank, because on a
family the shipped forecaster never saw its ranking holds and its scale does not; without
the study model, which learned from forecasts made at the probe. Explored trials are not
judged again: they run to their end to teach the study model.

Probe-step convention: a trial is judged at the first report whose step is at or after
``probe_step``, where a report's step is that of the newest measurement it carries. The
sweeps of both backends report a trial once it has trained ``probe_steps`` optimizer
updates: its evaluation at that step is the newest measurement, so both decide at
exactly ``probe_steps``, on the training loss of steps ``0 .. probe_steps - 1`` (the loss
at step ``s`` is measured before update ``s + 1``) and every evaluation up to and at
``probe_steps``.

Example:

    >>> from grokforecast.history import History
    >>> from grokforecast.core.policy import PolicySettings, StoppingPolicy, StudyContext
    >>> from grokforecast.corpus import load_corpus
    >>> record = load_corpus("quadratic_add97")[0]
    >>> policy = StoppingPolicy(PolicySettings(probe_step=60))
    >>> verdict = policy.decide(History.from_record(record, until=60), trial=0, context=StudyContext())
    >>> verdict.record.step, verdict.record.forecaster
    (60, 'full+hyperparameters')
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from grokforecast.core.decision import Decision, DecisionRecord, Probe, settled
from grokforecast.core.study_model import Outcome, StudyModel, study_model_for
from grokforecast.corpus import shipped_families
from grokforecast.errors import ConfigError
from grokforecast.forecast.fitting import fitted_without
from grokforecast.forecast.forecaster import GrokForecaster, pretrained_inputs_for
from grokforecast.history import History
from grokforecast.vocabulary import DEFAULT_GROK_THRESHOLD, SERIES

logger = logging.getLogger(__name__)

#: A decision by rank (the warm-up, the second look's rungs) never prunes a trial forecast
#: more likely to grok than not: where a study groks often, its bottom share by rank holds
#: grokkers the forecast saw. Held out by family in `bench replay`: at the warm-up this
#: kept one more grokker of the embedding MLP (168 of 168) and of parity (38 of 42), three
#: more of the transformer with the second look, for +0.00-0.09x of the oracle's compute;
#: at the rungs, two more of the transformer (39 of 39) and eight of the CNN on digits
#: (57 of 57), for +0.00-0.19x (``docs/benchmarks-history.md``).
KEEP_ODDS = 0.5

#: Where the second look judges a kept trial again, as shares of its budget, wherever the
#: budget is known (a study file that names no rungs, the replay's second-look rows; a
#: pruner alone does not know it). Replayed held out by family, rungs here kept >= 95 % of
#: the grokkers wherever the probe alone did (six families of seven), for 0.00-0.19x of
#: the oracle's compute less (``BENCHMARKS.md``).
SECOND_LOOK_SHARES = (0.25, 0.5)


@dataclass(frozen=True)
class PolicySettings:
    """Every option of the stopping policy, with its default and its check, written once:
    :class:`~grokforecast.HjorthPruner`, the Ray backend's ``GrokForecastScheduler`` and a
    study file's ``[pruner]`` table all take these, with the same meaning.

    Args:
        probe_step: The step at which the trial is judged (see the module's convention).
        threshold: Prune when the forecast P(grok) is below this, once the study model
            has learned (ignored with ``keep_top``).
        keep_top: If given, prune when the trial's forecast ranks below this fraction of
            the trials probed so far in the study (itself included).
        warm_up_keep_top: Until the study model has learned (``min_calibration_trials``
            outcomes of both kinds), decide by rank instead of by ``threshold``: keep a
            trial whose forecast ranks in this top fraction of the trials probed so far.
            On a model family the shipped forecaster never saw, its ranking holds up far
            better than its probability scale (``BENCHMARKS.md``); the trials kept are
            what the study model learns from. None: the threshold from the start.
        n_min_probed: Trials to probe before ``keep_top`` or ``warm_up_keep_top`` ranks anyone.
        exploration: Probability that a trial the rule would prune runs on anyway, until
            the study model has ``min_calibration_trials`` outcomes; then it shrinks in
            proportion to their number (half as likely at twice as many).
        recalibrate: Update the forecast with the study's finished trials (the study
            model); without it the shipped model decides alone.
        min_calibration_trials: Finished forecast trials, with both outcomes, before the
            study model is used.
        grok_threshold: Validation accuracy that counts as grokked (the keep rule for
            runs that have grokked by the probe).
        rungs: Steps after ``probe_step``, in increasing order, at which a kept trial is
            judged again (the module's "second look"); empty: judged once.
        rung_prune_share: At each rung, prune a trial whose forecast ranks in this bottom
            share of the trials judged at that rung so far (itself included), once
            ``n_min_probed`` of them have been, unless it is even odds or better.
        series: The series a caller reports when it supplies only one (``"train_loss"``,
            ``"val_loss"`` or ``"val_acc"``): it picks the shipped calibration used then.
        fitted_without: Model families (:func:`~grokforecast.corpus.shipped_families`)
            whose shipped corpora the forecaster is fitted without: the calibrations are
            refitted on the others when first needed. For a study on one of those families
            this is the forecast a user's own, never-recorded model gets; the decision
            record's ``forecaster`` says so.
        seed: Seed of the exploration draws.
    """

    probe_step: int
    threshold: float = 0.2
    keep_top: float | None = None
    warm_up_keep_top: float | None = 0.6
    n_min_probed: int = 5
    exploration: float = 0.05
    recalibrate: bool = True
    min_calibration_trials: int = 20
    grok_threshold: float = DEFAULT_GROK_THRESHOLD
    rungs: tuple[int, ...] = ()
    rung_prune_share: float = 0.2
    series: str = "train_loss"
    fitted_without: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rungs", tuple(int(step) for step in self.rungs))
        object.__setattr__(self, "fitted_without", tuple(sorted(set(self.fitted_without))))
        families = shipped_families()
        steps = (self.probe_step, *self.rungs)
        checks = (
            (self.probe_step >= 1, "probe_step", "must be at least 1"),
            (0.0 <= self.threshold <= 1.0, "threshold", "must lie in [0, 1]"),
            (self.keep_top is None or 0.0 < self.keep_top <= 1.0, "keep_top", "must lie in (0, 1]"),
            (
                self.warm_up_keep_top is None or 0.0 < self.warm_up_keep_top <= 1.0,
                "warm_up_keep_top",
                "must lie in (0, 1]",
            ),
            (self.n_min_probed >= 1, "n_min_probed", "must be at least 1"),
            (0.0 <= self.exploration <= 1.0, "exploration", "must lie in [0, 1]"),
            (self.min_calibration_trials >= 2, "min_calibration_trials", "must be at least 2"),
            (0.0 < self.grok_threshold <= 1.0, "grok_threshold", "must lie in (0, 1]"),
            (
                all(a < b for a, b in itertools.pairwise(steps)),
                "rungs",
                f"must be steps after probe_step={self.probe_step}, in increasing order",
            ),
            (0.0 <= self.rung_prune_share < 1.0, "rung_prune_share", "must lie in [0, 1)"),
            (self.series in SERIES, "series", f"must be one of {SERIES}"),
            (
                not self.fitted_without
                or (set(self.fitted_without) <= set(families) and len(self.fitted_without) < len(families)),
                "fitted_without",
                f"must name some of the shipped families {list(families)}, not all",
            ),
        )
        for holds, name, requirement in checks:
            if not holds:
                raise ConfigError(f"{name}={getattr(self, name)!r} {requirement}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, arguments: Mapping[str, Any]) -> PolicySettings:
        """The settings among ``arguments`` (a stopper's keyword arguments), by name."""
        return cls(**{name: arguments[name] for name in cls.names() if name in arguments})


@dataclass(frozen=True)
class StudyContext:
    """What the study knows when a trial is judged: what its finished trials taught (for
    the recalibration), the P(grok) of its other probed trials (for ``keep_top``) and, at a
    later rung, the forecasts of the other trials judged at that rung."""

    outcomes: Sequence[Outcome] = ()
    probed: Sequence[float] = ()
    at_rung: Sequence[float] = ()


@dataclass(frozen=True)
class Verdict:
    """A decision and, when a forecast was made, the probe record later trials learn from."""

    record: DecisionRecord
    probe: Probe | None
    #: At a later rung, the forecast that later trials at the rung rank against (None
    #: when the trial had grokked or could not be read: it ranked nobody).
    rung_forecast: float | None = None

    @property
    def stops(self) -> bool:
        return self.record.decision is Decision.PRUNE

    def noted(self, note: str) -> Verdict:
        """This verdict, its record saying also how the trial's reports were read."""
        joined = "; ".join(part for part in (self.record.note, note) if part)
        return replace(self, record=replace(self.record, note=joined)) if note else self


class StoppingPolicy:
    """Judge trials at their probe step (see the module's docstring for the steps).

    Args:
        settings: The options (:class:`PolicySettings`).
        forecaster: A fitted :class:`~grokforecast.GrokForecaster` to use instead of the
            shipped calibrations.
    """

    def __init__(self, settings: PolicySettings, forecaster: GrokForecaster | None = None) -> None:
        if forecaster is not None and not forecaster.fitted:
            raise ConfigError("forecaster is not fitted; call fit() or use GrokForecaster.pretrained()")
        if forecaster is not None and settings.fitted_without:
            raise ConfigError(
                f"fitted_without={settings.fitted_without!r} refits the shipped forecaster; "
                "give it or forecaster=, not both"
            )
        self.settings = settings
        self.custom_forecaster = forecaster
        self._pretrained: dict[str, GrokForecaster] = {}
        self._warned_unreadable = False

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pretrained": {}}  # reloaded from the package on demand

    def is_due(self, step: int | None) -> bool:
        """Whether a report at ``step`` is the probe (or after it)."""
        return step is not None and step >= self.settings.probe_step

    def rung_due(self, step: int | None, judged: int) -> int | None:
        """The later rung (numbered from 1) a kept trial reporting ``step`` is due to be
        judged at, having been judged at ``judged`` of them; None if none. A report that
        passes several rungs at once is judged once, at the newest."""
        if step is None:
            return None
        reached = sum(rung <= step for rung in self.settings.rungs)
        return reached if reached > judged else None

    def judged_again(self, decision: Decision, judged: int) -> bool:
        """Whether a trial decided ``decision`` at its probe, judged at ``judged`` later
        rungs, has rungs still to come (kept trials only: explored ones run to the end)."""
        return decision is Decision.KEEP and judged < len(self.settings.rungs)

    def diverged(self, history: History) -> DecisionRecord | None:
        """The record that prunes a history with a non-finite value (step 1), else None."""
        found = history.first_non_finite()
        return None if found is None else DecisionRecord.diverged(*found)

    def decide(
        self, history: History, trial: int | str, context: StudyContext, step: int | None = None
    ) -> Verdict:
        """Judge ``trial`` on ``history`` (at ``step``, default its newest measurement)."""
        step = history.newest_step if step is None else step
        diverged = self.diverged(history)
        if diverged is not None:
            return Verdict(diverged, None)
        key, forecaster = self.forecaster_for(history)
        try:
            assessment = forecaster.assess(history)
        except ValueError as error:
            return Verdict(self._unreadable(trial, step, error), None)
        model = self.study_model(context.outcomes, key)
        probability = model.probability(assessment.logit, assessment.standardized)
        grokked_rule = self._already_grokked(history)
        prune, rule = (
            (False, grokked_rule)
            if grokked_rule
            else self._rule(probability, context.probed, learned=model.trials > 0)
        )
        taught = sum(outcome.forecaster == key for outcome in context.outcomes)
        decision = settled(prune, self.settings.seed, trial, self.exploration_rate(taught))
        record = DecisionRecord(
            decision,
            int(step),
            probability,
            rule,
            assessment.main_features,
            model.trials,
            assessment.features,
            key,
            model.describe() if model.trials else {},
            note=assessment.at_mean_note,
        )
        probe = Probe(
            decision,
            assessment.logit,
            probability,
            key,
            grokked_at_probe=grokked_rule is not None,
            standardized=assessment.standardized,
        )
        return Verdict(record, probe)

    def judge_again(
        self, history: History, context: StudyContext, rung: int, step: int | None = None
    ) -> Verdict:
        """Judge a trial kept at its probe again, at later rung ``rung`` (see the module's
        "second look"): ``context.at_rung`` holds the forecasts of the other trials judged
        at this rung."""
        step = history.newest_step if step is None else step
        diverged = self.diverged(history)
        if diverged is not None:
            return Verdict(replace(diverged, rung=rung), None)
        key, forecaster = self.forecaster_for(history)
        try:
            assessment = forecaster.assess(history)
        except ValueError as error:
            record = DecisionRecord.without_forecast(Decision.KEEP, int(step), f"no forecast ({error})")
            return Verdict(replace(record, rung=rung), None)
        probability = StudyModel().probability(assessment.logit)  # the shipped forecast alone
        grokked_rule = self._already_grokked(history)
        if grokked_rule:
            prune, rule, forecast = False, grokked_rule, None
        else:
            share = 1.0 - self.settings.rung_prune_share
            prune, rule = self._ranked_unless_likely(
                probability, context.at_rung, share, "keep_top", "judged at this rung"
            )
            forecast = probability
        record = DecisionRecord(
            Decision.PRUNE if prune else Decision.KEEP,
            int(step),
            probability,
            f"rung {rung}: {rule}",
            assessment.main_features,
            0,
            assessment.features,
            key,
            note=assessment.at_mean_note,
            rung=rung,
        )
        return Verdict(record, None, forecast)

    def forecaster_for(self, history: History) -> tuple[str, GrokForecaster]:
        """The forecaster for what ``history`` holds, and its key (which outcomes teach it)."""
        if self.custom_forecaster is not None:
            return "custom", self.custom_forecaster
        inputs = pretrained_inputs_for(history, self.settings.series)
        without = self.settings.fitted_without
        key = f"{inputs} (fitted without {'+'.join(without)})" if without else inputs
        if key not in self._pretrained:
            self._pretrained[key] = (
                fitted_without(inputs, without) if without else GrokForecaster.pretrained(inputs)
            )
        return key, self._pretrained[key]

    def exploration_rate(self, taught: int) -> float:
        """The chance that a trial the rule prunes runs on, when ``taught`` finished trials
        of its forecaster have taught the study model: the evidence the study still needs."""
        settings = self.settings
        return settings.exploration * min(1.0, settings.min_calibration_trials / max(taught, 1))

    def study_model(self, outcomes: Sequence[Outcome], forecaster_key: str) -> StudyModel:
        """The shipped forecast updated by the study's outcomes (unchanged without ``recalibrate``)."""
        if not self.settings.recalibrate:
            return StudyModel()
        return study_model_for(outcomes, forecaster_key, self.settings.min_calibration_trials)

    def _unreadable(self, trial: int | str, step: int, error: ValueError) -> DecisionRecord:
        if not self._warned_unreadable:
            self._warned_unreadable = True
            logger.warning(
                "cannot forecast trial %s at step %s from its %s (%s); it is kept without a forecast. "
                "If the trial reports another series, name it: series='val_acc' for accuracy, "
                "'val_loss' for validation loss; if it reports too rarely, report more often before "
                "the probe step or raise probe_step (warned once)",
                trial,
                step,
                self.settings.series,
                error,
            )
        return DecisionRecord.without_forecast(Decision.KEEP, int(step), f"no forecast ({error})")

    def _already_grokked(self, history: History) -> str | None:
        """The keep rule's text for a run whose validation accuracy has reached the grok
        threshold by now, else None (or when it records none).

        The forecast is a guess at whether a run will reach that accuracy, read mostly from
        curves of runs still on their way; for a run that has reached it the answer is
        known (on digits, one at 97 % by step 110 was forecast at 0.06, its curves and
        hyperparameters being those of a non-grokker).
        """
        if "val_acc" not in history:
            return None
        accuracy = np.asarray(history["val_acc"], dtype=float)
        level = self.settings.grok_threshold
        if accuracy.size == 0 or accuracy.max() < level:
            return None
        return f"val_acc {accuracy.max():.3f} already >= {level:g} (grokked, nothing to forecast)"

    def _rule(self, probability: float, probed: Sequence[float], learned: bool) -> tuple[bool, str]:
        settings = self.settings
        if settings.keep_top is not None:
            return self._ranked(probability, probed, settings.keep_top, "keep_top")
        if learned or settings.warm_up_keep_top is None:
            return probability < settings.threshold, f"threshold {settings.threshold:g}"
        prune, ranked = self._ranked_unless_likely(
            probability, probed, settings.warm_up_keep_top, "warm_up_keep_top"
        )
        return prune, f"{ranked}, until the study model has learned"

    def _ranked_unless_likely(
        self, probability: float, probed: Sequence[float], share: float, name: str, among: str = "probed"
    ) -> tuple[bool, str]:
        """As :meth:`_ranked`, but a forecast of :data:`KEEP_ODDS` or better is kept."""
        prune, rule = self._ranked(probability, probed, share, name, among)
        if prune and probability >= KEEP_ODDS:
            return False, f"{rule}, but P(grok) >= {KEEP_ODDS:g}"
        return prune, rule

    def _ranked(
        self, probability: float, probed: Sequence[float], share: float, name: str, among: str = "probed"
    ) -> tuple[bool, str]:
        """Prune outside the top ``share`` of the trials probed so far (itself included)."""
        if len(probed) + 1 < self.settings.n_min_probed:
            warm_up = f"warm-up: {len(probed) + 1} of {self.settings.n_min_probed} {among}"
            return False, f"{name} {share:g} ({warm_up})"
        cutoff = float(np.quantile([*probed, probability], 1.0 - share))
        return probability < cutoff, f"{name} {share:g} of {len(probed) + 1} {among} (cut-off {cutoff:.3f})"
