"""Training engine: workloads that grok, the step loop, Grokfast filters, checkpoints.

Knows nothing of Optuna or storage; the sweep drives it from above. Its names are
imported lazily, so that :mod:`grokforecast.training.config` (what the command line's
flags are made from) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "TrainConfig": "grokforecast.training.config",
    "OPERATIONS": "grokforecast.training.datasets",
    "Split": "grokforecast.training.datasets",
    "modular_table": "grokforecast.training.datasets",
    "split_by_fraction": "grokforecast.training.datasets",
    "EMAFilter": "grokforecast.training.grokfast",
    "MAFilter": "grokforecast.training.grokfast",
    "RunStatus": "grokforecast.training.trainer",
    "Trainer": "grokforecast.training.trainer",
    "resolve_device": "grokforecast.training.trainer",
    "Problem": "grokforecast.training.workloads",
    "build_problem": "grokforecast.training.workloads",
    "register_workload": "grokforecast.training.workloads",
    "workload_names": "grokforecast.training.workloads",
    "workload_options": "grokforecast.training.workloads",
}

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

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'grokforecast.training' has no attribute {name!r}")
