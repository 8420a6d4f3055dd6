"""What the stopping policy decided about a trial, and why, as values a dashboard can show.

The decision is made at a trial's probe step, and again at each later rung for a kept
trial (``rung`` says where: 0 at the probe):

- ``KEEP``: the forecast says the run will grok (or there is nothing to forecast: it has
  grokked already, or its history cannot be read); it continues to full length.
- ``PRUNE``: the forecast says it will not, or its loss diverged; the trial ends there.
- ``EXPLORE``: the forecast says prune, but the trial was drawn to run to full length
  anyway, so that the study's own completed trials include low-forecast runs and the
  study model is not biased towards the trials it already liked.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from grokforecast.core.study_model import Outcome


class Decision(enum.StrEnum):
    KEEP = "keep"
    PRUNE = "prune"
    EXPLORE = "explore"


@dataclass(frozen=True)
class DecisionRecord:
    """A decision with its reason: the forecast, the rule it was held against, the step.

    ``probability`` is None when no forecast was made (a diverged loss, an unreadable
    history); ``rule`` then says why.
    """

    decision: Decision
    step: int
    probability: float | None
    rule: str
    main_features: dict[str, float] = field(default_factory=dict)
    calibrated_on: int = 0
    #: Every feature the forecaster read, by name (the early spectral activity among them).
    features: dict[str, float] = field(default_factory=dict)
    #: Which model decided: a shipped calibration's inputs, "custom", or None (no forecast).
    forecaster: str | None = None
    #: The study model's state when it decided (:meth:`StudyModel.describe`; empty
    #: while the forecaster decides alone).
    study_model: dict[str, float | int] = field(default_factory=dict)
    #: How the trial's reports were read, when the stopper had to guess (e.g. an accuracy
    #: reported to a pruner set up for a loss); empty otherwise.
    note: str = ""
    #: Where the decision was made: 0 at the probe, k at the k-th later rung.
    rung: int = 0

    @classmethod
    def without_forecast(cls, decision: Decision, step: int, rule: str) -> DecisionRecord:
        return cls(decision, step, None, rule)

    @classmethod
    def diverged(cls, series: str, step: int) -> DecisionRecord:
        """A trial whose ``series`` turned NaN or infinite at ``step``: pruned, as an outcome."""
        return cls.without_forecast(Decision.PRUNE, step, f"diverged: non-finite {series} at step {step}")

    @property
    def reason(self) -> str:
        return self._judgement + (f"; {self.note}" if self.note else "")

    @property
    def _judgement(self) -> str:
        if self.probability is None:
            return f"{self.decision.value} at step {self.step}: {self.rule}"
        features = ", ".join(f"{name} {value:+.2f}" for name, value in self.main_features.items())
        model = (
            f"the study model (learned from {self.calibrated_on} trials)"
            if self.calibrated_on
            else f"the {self.forecaster} forecaster"
        )
        return (
            f"{self.decision.value} at step {self.step}: P(grok) = {self.probability:.3f} from {model} "
            f"against {self.rule}; main features (logit contributions): {features}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored form (a trial's :data:`~grokforecast.vocabulary.DECISION_ATTR`)."""
        return {**asdict(self), "decision": self.decision.value, "reason": self.reason}


@dataclass(frozen=True)
class Probe:
    """What a stopper keeps of a forecast at the probe (the Optuna pruner in the trial's
    :data:`~grokforecast.vocabulary.PROBE_ATTR`, the Ray scheduler in its state, and
    the study database for both): what later trials and the study model need."""

    decision: Decision
    logit: float
    probability: float
    forecaster: str
    #: The run had grokked by its probe: it ran on whatever the forecast said.
    grokked_at_probe: bool = False
    #: The standardized features the forecaster read (what the study model learns from).
    standardized: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decision": self.decision.value, "standardized": list(self.standardized)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Probe:
        """A stored probe; one stored before ``grokked_at_probe`` or ``standardized``
        existed reads as False and empty."""
        return cls(
            Decision(data["decision"]),
            float(data["logit"]),
            float(data["probability"]),
            str(data["forecaster"]),
            bool(data.get("grokked_at_probe", False)),
            tuple(float(z) for z in data.get("standardized", ())),
        )

    def outcome(self, grokked: bool) -> Outcome:
        """What this probe's trial teaches the study model, once it ran to its end."""
        return Outcome(self.forecaster, self.logit, grokked, self.standardized)

    @property
    def teaches(self) -> bool:
        """Whether this trial, once run to its end, says how forecasts turn out here: the
        forecast let it run on (kept or explored), and it had not grokked already by its
        probe (then it ran on whatever the forecast said, and its logit forecast nothing)."""
        return self.decision is not Decision.PRUNE and not self.grokked_at_probe


def settled(prune: bool, seed: int, trial: int | str, exploration: float) -> Decision:
    """``KEEP`` or ``PRUNE`` as the rule says, or ``EXPLORE`` when a trial the rule would
    prune is drawn to run on (:func:`drawn_to_explore`)."""
    if not prune:
        return Decision.KEEP
    return Decision.EXPLORE if drawn_to_explore(seed, trial, exploration) else Decision.PRUNE


def drawn_to_explore(seed: int, trial: int | str, exploration: float) -> bool:
    """Whether trial ``trial`` (its number, or another stable name) runs on although its
    rule says prune: a function of the seed and the trial only, so that every worker, and
    both the Optuna and the Ray backend, draw the same."""
    return random.Random(f"{seed}:{trial}").random() < exploration
