"""Training engine: workloads that grok, the step loop, Grokfast filters, checkpoints.

Knows nothing of Optuna or storage; the sweep drives it from above.
"""

from grokforecast.training.config import TrainConfig
from grokforecast.training.datasets import OPERATIONS, Split, modular_table, split_by_fraction
from grokforecast.training.grokfast import EMAFilter, MAFilter
from grokforecast.training.trainer import RunStatus, Trainer, resolve_device
from grokforecast.training.workloads import (
    Problem,
    build_problem,
    register_workload,
    workload_names,
    workload_options,
)

__all__ = [
    "OPERATIONS",
    "EMAFilter",
    "MAFilter",
    "Problem",
    "RunStatus",
    "Split",
    "TrainConfig",
    "Trainer",
    "build_problem",
    "modular_table",
    "register_workload",
    "resolve_device",
    "split_by_fraction",
    "workload_names",
    "workload_options",
]
