"""Trainer throughput against a plain PyTorch loop of the same model.

The plain loop is the least a loop can do: (draw a mini-batch,) forward, loss,
zero_grad, backward, AdamW step, on the same model, data and optimizer settings, with
no metrics, evaluation or host transfers. The trainer's cost over it is what
grokforecast's bookkeeping costs.

A shared 2-core machine drifts by 10 % and more within a minute, as much as the cost
being measured. So both loops live through the whole measurement and take turns in
short rounds; each round's time ratio compares the two under the same conditions, and
the median ratio (with its quartiles, to show the noise) is the reported overhead.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from grokforecast.training import TrainConfig, Trainer, resolve_device


@dataclass(frozen=True)
class ThroughputResult:
    trainer_steps_per_second: float
    plain_steps_per_second: float
    overhead: float  #: median over rounds of trainer time / plain time, minus one
    overhead_quartiles: tuple[float, float]


def _trainer_loop(config: TrainConfig) -> Callable[[int], None]:
    trainer = Trainer(config)

    def run(steps: int) -> None:
        trainer.run(until=trainer.step + steps)

    return run


def _plain_loop(config: TrainConfig) -> Callable[[int], None]:
    trainer = Trainer(config)  # borrowed only for its model, data and optimizer
    model, optimizer = trainer.model, trainer.optimizer
    inputs, targets = trainer.train_inputs, trainer.train_targets
    loss_fn = F.mse_loss if trainer.loss_kind == "mse" else F.cross_entropy
    generator = torch.Generator().manual_seed(config.seed)

    def run(steps: int) -> None:
        for _ in range(steps):
            if trainer.full_batch:
                batch_inputs, batch_targets = inputs, targets
            else:
                index = torch.randperm(len(inputs), generator=generator)[: config.batch_size]
                index = index.to(inputs.device, non_blocking=True)
                batch_inputs, batch_targets = inputs[index], targets[index]
            loss = loss_fn(model(batch_inputs), batch_targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def _timed(run: Callable[[int], None], steps: int, device: torch.device) -> float:
    started = time.perf_counter()
    run(steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def measure_throughput(config: TrainConfig, steps: int = 100, rounds: int = 20) -> ThroughputResult:
    """Trainer and plain loop in ``rounds`` alternating rounds of ``steps`` steps each.

    ``config.steps`` is ignored: the trainer runs for as long as the rounds last.
    """
    config = dataclasses.replace(config, steps=10 + rounds * steps)
    trainer, plain = _trainer_loop(config), _plain_loop(config)
    device = resolve_device(config.device)
    for run in (trainer, plain):
        run(10)  # warm-up: allocator, kernels, first evaluation
    trainer_times, plain_times = [], []
    for _ in range(rounds):
        trainer_times.append(_timed(trainer, steps, device))
        plain_times.append(_timed(plain, steps, device))
    ratios = [t / p - 1.0 for t, p in zip(trainer_times, plain_times, strict=True)]
    quartiles = statistics.quantiles(ratios, n=4) if rounds > 1 else [ratios[0]] * 3
    return ThroughputResult(
        trainer_steps_per_second=steps / statistics.median(trainer_times),
        plain_steps_per_second=steps / statistics.median(plain_times),
        overhead=statistics.median(ratios),
        overhead_quartiles=(quartiles[0], quartiles[2]),
    )
