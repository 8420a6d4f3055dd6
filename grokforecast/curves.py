"""The curves of one training run and the grokking times derived from them.

Pure Python/numpy on purpose: the forecaster, the corpus reader and the reports read
curves without importing torch.

Step convention: everything recorded "at step s" is measured with the parameters after
``s`` optimizer updates. ``train_loss[s]`` and ``train_acc[s]`` come from the forward
pass of update ``s + 1`` (the batch it trains on); the evaluation series are taken every
``eval_every`` steps and at the end of each run segment, at the steps in ``eval_steps``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from grokforecast.vocabulary import DEFAULT_GROK_THRESHOLD


@dataclass
class Curves:
    """Dense per-step and per-evaluation series of one run.

    ``train_set_acc`` is filled only in mini-batch training, where the per-step accuracy
    is that of one batch; in full-batch training ``train_acc`` already is the accuracy on
    the whole training set and the extra evaluation would be wasted work.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    weight_norm: list[float] = field(default_factory=list)
    train_set_acc: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Number of optimizer updates recorded."""
        return len(self.train_loss)

    def to_dict(self) -> dict[str, list]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Curves:
        return cls(**{name: list(values) for name, values in data.items()})


@dataclass(frozen=True)
class GrokTimes:
    """Grokking times (docs/science.md, section 1).

    ``t2``: first step at which the whole training set is classified correctly.
    ``t4``: first evaluated step with validation accuracy >= the threshold (the grok step).
    ``grokked``: ``t4`` was reached within the recorded steps.
    """

    t2: int | None
    t4: int | None
    threshold: float

    @property
    def grokked(self) -> bool:
        return self.t4 is not None

    @property
    def delay(self) -> int | None:
        """``t4 - t2``: how long generalization lagged behind memorization."""
        if self.t2 is None or self.t4 is None:
            return None
        return self.t4 - self.t2


def _first_at_least(values: list[float], steps: list[int] | range, level: float) -> int | None:
    hits = np.flatnonzero(np.asarray(values, dtype=float) >= level)
    return int(steps[hits[0]]) if hits.size else None


def grok_times(curves: Curves, threshold: float = DEFAULT_GROK_THRESHOLD) -> GrokTimes:
    """Derive t2, t4 and whether the run grokked from its curves."""
    if curves.train_set_acc:
        t2 = _first_at_least(curves.train_set_acc, curves.eval_steps, 1.0)
    else:
        t2 = _first_at_least(curves.train_acc, range(curves.steps), 1.0)
    t4 = _first_at_least(curves.val_acc, curves.eval_steps, threshold)
    return GrokTimes(t2=t2, t4=t4, threshold=threshold)
