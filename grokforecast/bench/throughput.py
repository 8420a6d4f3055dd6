"""Trainer throughput against a plain PyTorch loop of the same model.

The plain loop is the least a loop can do: (draw a mini-batch,) forward, loss,
zero_grad, backward, AdamW step, on the same model, data and optimizer settings, with
no metrics, evaluation or host transfers. The trainer's cost over it is what grokforecast's bookkeeping costs.
Both run alternately in several rounds, so a slow phase of the machine hits both.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from grokforecast.training import TrainConfig, Trainer


@dataclass(frozen=True)
class ThroughputResult:
    trainer_steps_per_second: float
    plain_steps_per_second: float

    @property
    def overhead(self) -> float:
        """Trainer time per step over plain time per step, minus one."""
        return self.plain_steps_per_second / self.trainer_steps_per_second - 1.0


def _time_trainer(config: TrainConfig, steps: int) -> float:
    trainer = Trainer(config)
    trainer.run(until=10)  # warm-up: allocator, kernels, first evaluation
    started = time.perf_counter()
    trainer.run(until=10 + steps)
    _synchronize(trainer.device)
    return steps / (time.perf_counter() - started)


def _time_plain(config: TrainConfig, steps: int) -> float:
    trainer = Trainer(config)  # borrowed only for its model, data and optimizer
    model, optimizer = trainer.model, trainer.optimizer
    inputs, targets = trainer.train_inputs, trainer.train_targets
    loss_fn = F.mse_loss if trainer.loss_kind == "mse" else F.cross_entropy
    generator = torch.Generator().manual_seed(config.seed)

    def step() -> None:
        if trainer.full_batch:
            batch_inputs, batch_targets = inputs, targets
        else:
            index = torch.randperm(len(inputs), generator=generator)[: config.batch_size].to(inputs.device)
            batch_inputs, batch_targets = inputs[index], targets[index]
        loss = loss_fn(model(batch_inputs), batch_targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(10):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(trainer.device)
    return steps / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(config: TrainConfig, steps: int = 500, rounds: int = 5) -> ThroughputResult:
    """Median steps per second of the trainer and of the plain loop."""
    trainer_rates, plain_rates = [], []
    for _ in range(rounds):
        trainer_rates.append(_time_trainer(config, steps))
        plain_rates.append(_time_plain(config, steps))
    return ThroughputResult(statistics.median(trainer_rates), statistics.median(plain_rates))
