"""The grokking-time power law of Notsawo et al. 2023: ``t4(r) = a * r**-gamma + b``.

``r`` is the training-data fraction. Fitted on runs that grokked; used to say how many
steps a promising trial still needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GrokTimeLaw:
    """A fitted ``t4(r) = a * r**-gamma + b``, with ``r`` a fraction in (0, 1]."""

    a: float
    gamma: float
    b: float

    def predict(self, r: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
        """Grokking step at data fraction(s) ``r``."""
        values = self.a * np.asarray(r, dtype=float) ** -self.gamma + self.b
        return float(values) if np.ndim(values) == 0 else values


def fit_grok_time(r: Sequence[float] | np.ndarray, t: Sequence[float] | np.ndarray) -> GrokTimeLaw:
    """Least-squares fit of the power law to grokking steps ``t`` at data fractions ``r``.

    >>> r = np.array([0.3, 0.4, 0.5, 0.6, 0.7])
    >>> law = fit_grok_time(r, 50 * r**-2.0 + 100)
    >>> round(law.a), round(law.gamma, 2), round(law.b), round(law.predict(0.45))
    (50, 2.0, 100, 347)
    """
    from scipy.optimize import curve_fit

    r, t = np.asarray(r, dtype=float), np.asarray(t, dtype=float)
    if r.shape != t.shape:
        raise ValueError(f"r has {r.size} values but t has {t.size}")
    if len(np.unique(r)) < 3:
        raise ValueError(
            f"fitting a, gamma and b needs at least 3 distinct data fractions, got {len(np.unique(r))}"
        )
    if not ((r > 0) & (r <= 1)).all():
        raise ValueError(f"data fractions must lie in (0, 1]; got {r[(r <= 0) | (r > 1)][0]}")
    if not np.isfinite(t).all() or (t < 0).any():
        raise ValueError("grokking steps must be finite and >= 0 (fit only the runs that grokked)")

    def law(x: np.ndarray, a: float, gamma: float, b: float) -> np.ndarray:
        return a * x**-gamma + b

    start = (max(float(np.ptp(t)), 1.0), 1.0, float(t.min()))
    (a, gamma, b), _ = curve_fit(
        law, r, t, p0=start, bounds=([0.0, 0.0, -np.inf], [np.inf, 20.0, np.inf]), maxfev=20_000
    )
    return GrokTimeLaw(float(a), float(gamma), float(b))
