"""The settings of one training run, checked when they are made."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from grokforecast.errors import ConfigError
from grokforecast.vocabulary import DEFAULT_GROK_THRESHOLD

GrokfastKind = Literal["none", "ema", "ma"]

#: Settings that do not change the trajectory, so a checkpoint made under other values
#: may be continued: the step budget (a probe is extended to full length), the device,
#: and the threshold that only labels the result.
_NOT_FINGERPRINTED = frozenset({"steps", "device", "grok_threshold"})

#: One line per setting; the command line and the study files show these.
SETTING_HELP: dict[str, str] = {
    "workload": "Registered workload: modular_mlp, modular_quadratic, sparse_parity, digits_mlp, ...",
    "workload_options": "Options of the workload, e.g. {p = 97, op = 'x/y'}.",
    "data_fraction": "Fraction of the dataset used for training, in (0, 1); the rest validates.",
    "lr": "AdamW learning rate (after warm-up).",
    "weight_decay": "AdamW (decoupled) weight decay.",
    "beta1": "AdamW beta1.",
    "beta2": "AdamW beta2.",
    "warmup_steps": "Linear learning-rate warm-up length in steps (0: none).",
    "batch_size": "Mini-batch size; unset for full-batch training.",
    "init_scale": "Omnigrok's alpha: every weight is multiplied by it after initialization.",
    "grokfast": "Grokfast gradient filter: none, ema or ma.",
    "grokfast_alpha": "EMA filter momentum (paper: 0.98).",
    "grokfast_lamb": "Filter amplification; unset: 2.0 for ema, 5.0 for ma.",
    "grokfast_window": "MA filter window in steps (paper: 100).",
    "seed": "Seed of the data split, the initialization and the batches.",
    "steps": "Train until this many optimizer updates.",
    "eval_every": "Evaluate validation loss/accuracy and weight norm every this many steps.",
    "grok_threshold": "Validation accuracy that counts as generalized (t4).",
    "device": "auto (CUDA when available), cpu, cuda or cuda:N.",
}


@dataclass(frozen=True)
class TrainConfig:
    """One training configuration: workload, optimizer, Grokfast filter, budget.

    Defaults are a CPU grokking setting (docs/science.md): an embedding MLP on
    ``(x + y) mod 59``, full batch, AdamW lr 1e-3, weight decay 1, half the table for
    training. ``batch_size=None`` means full batch. ``grokfast_lamb=None`` takes the
    paper's default for the filter (2.0 for EMA, 5.0 for MA).
    """

    workload: str = "modular_mlp"
    workload_options: dict[str, Any] = field(default_factory=dict)
    data_fraction: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    warmup_steps: int = 10
    batch_size: int | None = None
    init_scale: float = 1.0
    grokfast: GrokfastKind = "none"
    grokfast_alpha: float = 0.98
    grokfast_lamb: float | None = None
    grokfast_window: int = 100
    seed: int = 0
    steps: int = 3000
    eval_every: int = 10
    grok_threshold: float = DEFAULT_GROK_THRESHOLD
    device: str = "auto"

    def __post_init__(self) -> None:
        _positive(self, "lr", "init_scale", "steps", "eval_every")
        _at_least_zero(self, "weight_decay", "warmup_steps", "seed")
        for name in ("beta1", "beta2", "grokfast_alpha"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name}={value} must lie in [0, 1), e.g. 0.98")
        if not 0.0 < self.data_fraction < 1.0:
            raise ConfigError(f"data_fraction={self.data_fraction} must lie strictly between 0 and 1")
        if not 0.0 < self.grok_threshold <= 1.0:
            raise ConfigError(f"grok_threshold={self.grok_threshold} must lie in (0, 1]")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be at least 1 (or none: full batch)")
        if self.grokfast not in ("none", "ema", "ma"):
            raise ConfigError(f"grokfast={self.grokfast!r} must be 'none', 'ema' or 'ma'")
        if self.grokfast_window < 1:
            raise ConfigError(f"grokfast_window={self.grokfast_window} must be at least 1")
        if self.grokfast_lamb is not None and not (
            self.grokfast_lamb >= 0 and math.isfinite(self.grokfast_lamb)
        ):
            raise ConfigError(f"grokfast_lamb={self.grokfast_lamb} must be a finite number >= 0")

    @property
    def filter_lamb(self) -> float:
        """The Grokfast amplification in force (the paper's default when unset)."""
        if self.grokfast_lamb is not None:
            return self.grokfast_lamb
        return 5.0 if self.grokfast == "ma" else 2.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from plain values, naming the first unknown key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training setting {unknown[0]!r}; known: {sorted(known)}")
        return cls(**data)

    def fingerprint(self) -> str:
        """Hash of the settings that define the trajectory (checkpoint compatibility)."""
        relevant = {k: v for k, v in self.to_dict().items() if k not in _NOT_FINGERPRINTED}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]

    def trajectory_differences(self, other: TrainConfig) -> list[str]:
        """Names of the trajectory-defining settings in which ``other`` differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in mine if k not in _NOT_FINGERPRINTED and mine[k] != theirs[k])


def _positive(config: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{name}={value} must be a finite number > 0")


def _at_least_zero(config: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"{name}={value} must be a finite number >= 0")
