"""The Optuna backend: the pruner, the Monitor, the sweep's objective and its workers."""

from grokforecast.backends.optuna.monitor import Monitor
from grokforecast.backends.optuna.pruner import HjorthPruner

__all__ = ["HjorthPruner", "Monitor"]
