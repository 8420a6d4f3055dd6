"""Hjorth parameters, trend removal and band energy against hand-computed cases."""

import math

import numpy as np
import pytest

from grokforecast.spectral import (
    band_energy,
    detrend,
    hjorth,
    loss_signature,
    resample_uniform,
)

T = np.arange(2000)


@pytest.mark.parametrize(("amplitude", "period"), [(1.0, 50), (3.0, 20), (0.01, 8)])
def test_a_sine_has_activity_a2_over_2_mobility_2sin_pi_f_and_complexity_1(
    amplitude: float, period: int
) -> None:
    h = hjorth(amplitude * np.sin(2 * np.pi * T / period))
    assert h.activity == pytest.approx(amplitude**2 / 2, rel=1e-3)
    assert h.mobility == pytest.approx(2 * math.sin(math.pi / period), rel=1e-3)
    assert h.complexity == pytest.approx(1.0, rel=1e-2)


def test_white_noise_has_mobility_sqrt2_and_complexity_sqrt3_over_sqrt2() -> None:
    noise = np.random.default_rng(0).normal(0.0, 2.0, 200_000)
    h = hjorth(noise)
    assert h.activity == pytest.approx(4.0, rel=1e-2)
    assert h.mobility == pytest.approx(math.sqrt(2), rel=1e-2)
    assert h.complexity == pytest.approx(math.sqrt(3 / 2), rel=1e-2)


def test_a_faster_oscillation_has_a_higher_mobility() -> None:
    assert hjorth(np.sin(2 * np.pi * T / 10)).mobility > hjorth(np.sin(2 * np.pi * T / 100)).mobility


@pytest.mark.parametrize(
    ("method", "options"),
    [("moving_average", {"window": 20}), ("polynomial", {"degree": 1}), ("polynomial", {"degree": 3})],
)
def test_trend_removal_leaves_nothing_of_a_ramp(method: str, options: dict) -> None:
    residual = detrend(5.0 + 0.3 * T, method, **options)
    assert hjorth(residual).activity == pytest.approx(0.0, abs=1e-12)


def test_trend_removal_keeps_an_oscillation_on_a_ramp() -> None:
    ramp_and_sine = 0.05 * T + np.sin(2 * np.pi * T / 5)  # 4 periods per 20-step window
    residual = detrend(ramp_and_sine, "moving_average", window=20)
    assert hjorth(residual).activity == pytest.approx(0.5, rel=1e-3)
    assert len(residual) == len(T) - 19


def test_fft_detrend_drops_the_lowest_bins_only() -> None:
    slow, fast = np.sin(2 * np.pi * T / 1000), 0.5 * np.sin(2 * np.pi * T / 10)
    residual = detrend(slow + fast + 7.0, "fft", low_bins=3)
    np.testing.assert_allclose(residual, fast, atol=1e-9)


def test_band_energy_of_the_whole_band_is_the_activity() -> None:
    x = detrend(np.random.default_rng(1).normal(size=999), "none")
    assert band_energy(x) == pytest.approx(hjorth(x).activity, rel=1e-9)
    sine = np.sin(2 * np.pi * T / 8)
    assert band_energy(sine, 0.1, 0.15) == pytest.approx(0.5, rel=1e-6)
    assert band_energy(sine, 0.0, 0.1) == pytest.approx(0.0, abs=1e-12)


def test_uneven_steps_are_resampled_onto_a_uniform_grid() -> None:
    steps = np.array([0, 1, 2, 4, 8, 9, 10])
    grid, values = resample_uniform(steps, 2.0 * steps)
    np.testing.assert_array_equal(grid, np.arange(11))
    np.testing.assert_allclose(values, 2.0 * grid)


def test_the_signature_of_an_oscillating_loss_exceeds_that_of_a_smooth_one() -> None:
    smooth = np.exp(-T[:400] / 100) + 0.01
    wiggly = smooth * (1 + 0.2 * np.sin(2 * np.pi * T[:400] / 7))
    assert loss_signature(wiggly).activity > 100 * loss_signature(smooth).activity
    assert loss_signature(wiggly).band_energy > 100 * loss_signature(smooth).band_energy


def test_a_flat_signal_has_zero_parameters_not_nan() -> None:
    h = hjorth(np.full(50, 3.0))
    assert (h.activity, h.mobility, h.complexity) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: hjorth([1.0, 2.0, 3.0]), "signal has 3 points; at least 4"),
        (lambda: hjorth([1.0, float("nan"), 2.0, 3.0]), "non-finite value nan at index 1"),
        (lambda: hjorth([1.0, 2.0, float("inf"), 3.0]), "non-finite value inf at index 2"),
        (lambda: detrend(np.ones(10), window=25), "signal has 10 points; .* window=25 needs at least 28"),
        (lambda: detrend(np.ones(10), "wavelet"), "unknown detrend method 'wavelet'"),
        (lambda: band_energy(np.ones(10), 0.3, 0.2), r"band \(0.3, 0.2\)"),
        (lambda: loss_signature(np.r_[np.ones(40), 0.0]), "loss has a value 0.0 <= 0"),
        (lambda: resample_uniform([0, 2, 1, 3], [1.0, 2.0, 3.0, 4.0]), "steps must increase strictly"),
    ],
)
def test_bad_signals_raise_naming_the_problem(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
