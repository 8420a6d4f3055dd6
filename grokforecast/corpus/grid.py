"""Corpus grids: a TOML file naming fixed settings and the lists whose product is run.

Example (``grokforecast/corpus/grids/mlp_add59.toml``)::

    name = "mlp_add59"

    [fixed]                       # any TrainConfig setting
    workload = "modular_mlp"
    workload_options = { p = 59, op = "x+y" }
    steps = 3000

    [grid]                        # lists; every combination is one run
    lr = [1e-3, 3e-3]
    weight_decay = [0.3, 1.0, 3.0]
    data_fraction = [0.3, 0.5, 0.7]
    seed = [0, 1]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grokforecast.errors import ConfigError
from grokforecast.training.config import TrainConfig


@dataclass(frozen=True)
class Cell:
    """One run of a grid: an id stable across machines, and its settings."""

    run_id: str
    config: TrainConfig


@dataclass(frozen=True)
class Grid:
    name: str
    fixed: dict[str, Any]
    axes: dict[str, list[Any]]

    def cells(self) -> list[Cell]:
        names = list(self.axes)
        cells = []
        for values in itertools.product(*self.axes.values()):
            settings = {**self.fixed, **dict(zip(names, values, strict=True))}
            config = TrainConfig.from_dict(settings)
            cells.append(Cell(_run_id(self.name, config), config))
        return cells


def _run_id(grid_name: str, config: TrainConfig) -> str:
    settings = {k: v for k, v in config.to_dict().items() if k != "device"}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return f"{grid_name}-{digest}"


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; every problem is reported with the file and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read grid file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    unknown = sorted(set(data) - {"name", "fixed", "grid"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; a grid has name, [fixed] and [grid]")
    name = data.get("name", path.stem)
    fixed, axes = data.get("fixed", {}), data.get("grid", {})
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid.{key} must be a non-empty list, got {values!r}")
    try:
        grid = Grid(name=name, fixed=fixed, axes=axes)
        grid.cells()
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    except TypeError as error:
        raise ConfigError(f"{path}: {error}") from None
    return grid
