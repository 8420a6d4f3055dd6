"""Hjorth parameters, trend removal, band energy and resampling of 1-D training curves.

Pure numpy/scipy: this module knows nothing of torch or Optuna.

Notsawo et al. 2023 measure the oscillations of the early training loss by the Hjorth
parameters or the spectral energy of the loss once its non-oscillating part is removed;
they do not say how. Here that choice is explicit (:func:`detrend`) and the paper's
signature is a named default (:func:`loss_signature`):

- take ``log(loss)`` (the loss falls over orders of magnitude; its oscillations are
  multiplicative),
- resample onto a uniform step grid if the steps are uneven,
- remove the trend with a centred moving average (a high-pass whose cut-off is one
  cycle per ``window`` steps),
- report the Hjorth activity, mobility and complexity and the band energy of what is
  left.

Degenerate input has a defined answer, never a silent NaN: fewer than
:data:`MIN_LENGTH` points or a NaN / infinite value raise :class:`ValueError` naming the
problem, and a flat signal (zero variance) has activity, mobility and complexity 0
(any ``0 / 0`` is taken as 0: a signal that does not move has no mobility).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

#: Shortest signal with a defined complexity (it needs second differences with variance).
MIN_LENGTH = 4

DetrendMethod = Literal["moving_average", "polynomial", "fft", "none"]


@dataclass(frozen=True)
class Hjorth:
    """Hjorth parameters of a signal ``x``.

    ``activity = var(x)``; ``mobility = sqrt(var(x') / var(x))``;
    ``complexity = mobility(x') / mobility(x)``, with ``x'`` the first difference.
    """

    activity: float
    mobility: float
    complexity: float


def check_signal(x: np.ndarray | list[float], name: str = "signal", fewest: int = MIN_LENGTH) -> np.ndarray:
    """``x`` as a float array of at least ``fewest`` points, or a ValueError naming what
    is wrong with it."""
    values = np.asarray(x, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional but has shape {values.shape}")
    if len(values) < fewest:
        points = "1 point" if len(values) == 1 else f"{len(values)} points"
        raise ValueError(f"{name} has {points}; at least {fewest} are needed")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{name} has a non-finite value {values[bad[0]]} at index {bad[0]}")
    return values


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def _mobility(x: np.ndarray) -> float:
    return float(np.sqrt(_ratio(np.var(np.diff(x)), np.var(x))))


def hjorth(x: np.ndarray | list[float]) -> Hjorth:
    """Hjorth activity, mobility and complexity of ``x``.

    A sine of frequency f (cycles per step) has activity amplitude**2 / 2, mobility
    2 sin(pi f) (of the first difference; ~ 2 pi f for slow sines) and complexity 1:

    >>> h = hjorth(3 * np.sin(2 * np.pi * np.arange(1000) / 50))
    >>> round(h.activity, 2), round(h.mobility, 3), round(h.complexity, 2)
    (4.5, 0.126, 1.0)
    """
    x = check_signal(x)
    dx = np.diff(x)
    mobility = _mobility(x)
    return Hjorth(
        activity=float(np.var(x)),
        mobility=mobility,
        complexity=_ratio(_mobility(dx), mobility),
    )


def detrend(
    x: np.ndarray | list[float],
    method: DetrendMethod = "moving_average",
    *,
    window: int = 25,
    degree: int = 2,
    low_bins: int = 3,
) -> np.ndarray:
    """Remove the non-oscillating part of ``x`` (constant, trend, smooth decay).

    - ``"moving_average"``: subtract the moving average of the last ``window`` points,
      where the window fits (the result is ``window - 1`` points shorter, so edges add no
      artefact); keeps oscillations faster than ``1 / window`` cycles per step.
    - ``"polynomial"``: subtract a least-squares polynomial of ``degree``.
    - ``"fft"``: zero the ``low_bins`` lowest real-FFT bins (the mean included).
    - ``"none"``: only subtract the mean.
    """
    x = check_signal(x)
    if method == "moving_average":
        if window < 2:
            raise ValueError(f"window={window} must be at least 2")
        if len(x) < window + MIN_LENGTH - 1:
            raise ValueError(
                f"signal has {len(x)} points; a moving-average detrend with window={window} needs at "
                f"least {window + MIN_LENGTH - 1} (probe longer or lower the window)"
            )
        kernel = np.ones(window) / window
        return x[window - 1 :] - np.convolve(x, kernel, mode="valid")
    if method == "polynomial":
        if degree < 0:
            raise ValueError(f"degree={degree} must be at least 0")
        index = np.linspace(-1.0, 1.0, len(x))
        return x - np.polynomial.polynomial.polyval(index, np.polynomial.polynomial.polyfit(index, x, degree))
    if method == "fft":
        if low_bins < 1:
            raise ValueError(f"low_bins={low_bins} must be at least 1")
        spectrum = np.fft.rfft(x)
        spectrum[:low_bins] = 0.0
        return np.fft.irfft(spectrum, n=len(x))
    if method == "none":
        return x - x.mean()
    raise ValueError(f"unknown detrend method {method!r}; use moving_average, polynomial, fft or none")


def band_energy(x: np.ndarray | list[float], low: float = 0.0, high: float = 0.5) -> float:
    """Mean power of ``x`` between ``low`` and ``high`` cycles per sample (0 to 0.5).

    Normalized by Parseval so that the whole band of a zero-mean signal equals its
    variance, i.e. its Hjorth activity.

    >>> x = np.sin(2 * np.pi * np.arange(400) / 8)
    >>> round(band_energy(x, 0.1, 0.2), 3), round(band_energy(x, 0.0, 0.1), 3)
    (0.5, 0.0)
    """
    x = check_signal(x)
    if not 0.0 <= low < high <= 0.5:
        raise ValueError(f"band ({low}, {high}) must satisfy 0 <= low < high <= 0.5 cycles per sample")
    n = len(x)
    power = np.abs(np.fft.rfft(x)) ** 2
    power[1 : (n + 1) // 2] *= 2.0  # the bins that stand for a negative frequency too
    frequencies = np.fft.rfftfreq(n)
    in_band = (frequencies >= low) & (frequencies <= high)
    return float(power[in_band].sum() / n**2)


def resample_uniform(
    steps: np.ndarray | list[float], values: np.ndarray | list[float], every: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of ``values`` at increasing ``steps`` onto a uniform grid.

    ``every`` defaults to the median spacing of ``steps``. Returns the grid and values.
    """
    steps, values = np.asarray(steps, dtype=float), check_signal(values, "values")
    if steps.shape != values.shape:
        raise ValueError(f"steps has {len(steps)} points but values has {len(values)}")
    spacing = np.diff(steps)
    if (spacing <= 0).any():
        raise ValueError(
            f"steps must increase strictly; step {steps[np.argmax(spacing <= 0) + 1]:g} does not"
        )
    every = float(np.median(spacing)) if every is None else every
    if every <= 0:
        raise ValueError(f"every={every} must be positive")
    grid = np.arange(steps[0], steps[-1] + every / 2, every)
    return grid, np.interp(grid, steps, values)


def is_uniform(steps: np.ndarray) -> bool:
    spacing = np.diff(steps)
    return bool(spacing.size == 0 or np.all(spacing == spacing[0]))


@dataclass(frozen=True)
class Signature:
    """The paper's oscillation signature of a loss curve (see the module docstring)."""

    activity: float
    mobility: float
    complexity: float
    band_energy: float


def loss_signature(
    loss: np.ndarray | list[float],
    steps: np.ndarray | list[float] | None = None,
    *,
    log: bool = True,
    method: DetrendMethod = "moving_average",
    window: int = 25,
    band: tuple[float, float] | None = None,
) -> Signature:
    """Hjorth parameters and band energy of ``loss`` with its trend removed.

    ``band`` defaults to faster than one cycle per ``window`` samples, the moving
    average's cut-off (0.04 for the default window of 25). Tied to the window, it stays
    a part of the residual on a short history too: with a fixed 0.04, a history of fewer
    than 25 samples has no frequency below the band, and the band energy equalled the
    activity exactly. A loss must be positive to take its log.
    """
    values = check_signal(loss, "loss")
    if log:
        if (values <= 0).any():
            raise ValueError(
                f"loss has a value {values[values <= 0][0]} <= 0, and its log is taken: is it a loss?"
            )
        values = np.log(values)
    if steps is not None:
        steps = np.asarray(steps, dtype=float)
        if not is_uniform(steps):
            _, values = resample_uniform(steps, values)
    residual = detrend(values, method, window=window)
    parameters = hjorth(residual)
    low, high = band if band is not None else (1.0 / window, 0.5)
    return Signature(
        parameters.activity, parameters.mobility, parameters.complexity, band_energy(residual, low, high)
    )
