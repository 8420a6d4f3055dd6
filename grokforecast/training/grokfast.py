"""Grokfast gradient filters (Lee et al. 2024): amplify the slow part of each gradient.

Applied between ``backward()`` and ``optimizer.step()``:

- EMA: ``mu <- alpha * mu + (1 - alpha) * g``; ``g <- g + lamb * mu``; ``mu`` starts at
  the first gradient.
- MA: ``g <- g + lamb * mean(last window gradients)``, applied only once the window is
  full.

The filters keep their state as tensors so that checkpoints can hold it and a continued
run is bit-for-bit the run that was never interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class EMAFilter:
    """Exponential moving average filter (paper defaults: alpha 0.98, lamb 2.0)."""

    def __init__(self, alpha: float = 0.98, lamb: float = 2.0) -> None:
        self.alpha, self.lamb = alpha, lamb
        self.averages: list[torch.Tensor] = []

    @torch.no_grad()
    def apply(self, params: Sequence[torch.nn.Parameter]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if not self.averages:
            self.averages = [g.clone() for g in grads]
        else:
            for mu, g in zip(self.averages, grads, strict=True):
                mu.mul_(self.alpha).add_(g, alpha=1.0 - self.alpha)
        for mu, g in zip(self.averages, grads, strict=True):
            g.add_(mu, alpha=self.lamb)

    def state_dict(self) -> dict:
        return {"averages": self.averages}

    def load_state_dict(self, state: dict) -> None:
        self.averages = list(state["averages"])


class MAFilter:
    """Moving average over the last ``window`` gradients (paper defaults: 100, lamb 5.0)."""

    def __init__(self, window: int = 100, lamb: float = 5.0) -> None:
        self.window, self.lamb = window, lamb
        self.history: list[torch.Tensor] = []  # one [window, *shape] ring buffer per param
        self.count = 0

    @torch.no_grad()
    def apply(self, params: Sequence[torch.nn.Parameter]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if not self.history:
            self.history = [g.new_zeros((self.window, *g.shape)) for g in grads]
        slot = self.count % self.window
        self.count += 1
        for ring, g in zip(self.history, grads, strict=True):
            ring[slot].copy_(g)
            if self.count >= self.window:
                g.add_(ring.mean(dim=0), alpha=self.lamb)

    def state_dict(self) -> dict:
        return {"history": self.history, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.history, self.count = list(state["history"]), int(state["count"])


GradientFilter = EMAFilter | MAFilter


def make_filter(kind: str, alpha: float, lamb: float, window: int) -> GradientFilter | None:
    """The filter named by a config's ``grokfast`` setting, or None for ``"none"``."""
    if kind == "ema":
        return EMAFilter(alpha, lamb)
    if kind == "ma":
        return MAFilter(window, lamb)
    return None
