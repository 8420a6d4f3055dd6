"""Forecasting grokking from early curves: features, the calibrated model, the time law.

Knows nothing of torch or Optuna; reads histories as numpy arrays.
"""

from grokforecast.forecast.features import FEATURE_GROUPS, extract_features
from grokforecast.forecast.forecaster import PRETRAINED_INPUTS, GrokForecaster
from grokforecast.forecast.grok_time import GrokTimeLaw, fit_grok_time

__all__ = [
    "FEATURE_GROUPS",
    "PRETRAINED_INPUTS",
    "GrokForecaster",
    "GrokTimeLaw",
    "extract_features",
    "fit_grok_time",
]
