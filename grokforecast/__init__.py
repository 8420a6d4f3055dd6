"""grokforecast: hyperparameter sweeps that forecast grokking and prune the rest early.

The public API is imported lazily, so ``import grokforecast`` stays fast and needs
neither torch nor Optuna until a name that uses them is touched::

    import grokforecast as gf

    gf.hjorth(x)                         # Hjorth(activity, mobility, complexity)
    gf.GrokForecaster.pretrained()       # the calibrated forecaster shipped in the package
    gf.fit_grok_time(r, t)               # t4(r) = a * r**-gamma + b
    gf.HjorthPruner(probe_step=300)      # an Optuna pruner
    gf.Monitor(trial)                    # buffers a trial's curves, reports at a stride
    gf.GrokForecastScheduler(probe_step=300)  # the same policy as a Ray Tune scheduler (imports Ray)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "hjorth": "grokforecast.spectral",
    "Hjorth": "grokforecast.spectral",
    "loss_signature": "grokforecast.spectral",
    "GrokForecaster": "grokforecast.forecast.forecaster",
    "fit_grok_time": "grokforecast.forecast.grok_time",
    "GrokTimeLaw": "grokforecast.forecast.grok_time",
    "HjorthPruner": "grokforecast.backends.optuna.pruner",
    "Monitor": "grokforecast.backends.optuna.monitor",
    "GrokForecastScheduler": "grokforecast.backends.ray.scheduler",
    "Decision": "grokforecast.core.decision",
    "History": "grokforecast.history",
}

__all__ = [
    "Decision",
    "GrokForecastScheduler",
    "GrokForecaster",
    "GrokTimeLaw",
    "History",
    "Hjorth",
    "HjorthPruner",
    "Monitor",
    "__version__",
    "fit_grok_time",
    "hjorth",
    "loss_signature",
]

if TYPE_CHECKING:
    from grokforecast.backends.optuna.monitor import Monitor
    from grokforecast.backends.optuna.pruner import HjorthPruner
    from grokforecast.backends.ray.scheduler import GrokForecastScheduler
    from grokforecast.core.decision import Decision
    from grokforecast.forecast.forecaster import GrokForecaster
    from grokforecast.forecast.grok_time import GrokTimeLaw, fit_grok_time
    from grokforecast.history import History
    from grokforecast.spectral import Hjorth, hjorth, loss_signature


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'grokforecast' has no attribute {name!r}")
