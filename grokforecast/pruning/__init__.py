"""Optuna integration: the ``HjorthPruner``, the ``Monitor`` helper, decisions with reasons.

Knows nothing of torch or of grokforecast's own storage.
"""

from grokforecast.pruning.decision import Decision, DecisionRecord
from grokforecast.pruning.hjorth_pruner import HjorthPruner
from grokforecast.pruning.monitor import Monitor

__all__ = ["Decision", "DecisionRecord", "HjorthPruner", "Monitor"]
