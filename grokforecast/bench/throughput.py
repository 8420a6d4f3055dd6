"""Trainer throughput against plain PyTorch loops of the same model.

Two baselines, because the trainer does two kinds of extra work:

- the *plain loop* is the least a loop can do: learning-rate warm-up, (draw a
  mini-batch,) forward, loss, zero_grad, backward, (Grokfast filter,) AdamW step, with no
  metrics and no evaluation: the same updates as the trainer's, bit for bit;
- the *evaluating loop* is the plain loop plus the evaluations a user asks for, written
  as anyone would write them (every ``eval_every`` steps: validation loss and accuracy,
  weight norm and, in mini-batch training, the accuracy on the whole training set, each
  fetched with ``.item()``).

Trainer over the evaluating loop is what the loop around the model costs (per-step loss
and accuracy, batched transfers, Python); trainer over the plain loop is everything,
evaluations included, whose cost grows with the validation set and shrinks with
``eval_every``.

A shared 2-core machine drifts by 10 % and more within a minute, as much as the cost
being measured. So the three loops train one model and take turns in short rounds (in
rotating order); each round compares them under the same conditions, and the median of
the per-round ratios is the reported overhead, with a bootstrap 95 % interval. A round
is a whole number of evaluation intervals, so every round of every loop holds the same
evaluations.
"""

from __future__ import annotations

import dataclasses
import math
import random
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from grokforecast.training import TrainConfig, Trainer
from grokforecast.training.trainer import loss_of, warmup_lr

Loop = Callable[[int], None]


@dataclass(frozen=True)
class Overhead:
    """The median of per-round time ratios minus one, with a bootstrap 95 % interval."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, slower: Sequence[float], faster: Sequence[float], resamples: int = 2000) -> Overhead:
        ratios = [s / f - 1.0 for s, f in zip(slower, faster, strict=True)]
        rng = random.Random(0)
        medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
        return cls(
            statistics.median(ratios), medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]
        )


@dataclass(frozen=True)
class ThroughputResult:
    steps_per_round: int
    #: Minor page faults per step of the plain loop, the evaluating loop and the trainer.
    page_faults_per_step: tuple[float, float, float]
    plain_steps_per_second: float
    evaluating_steps_per_second: float
    trainer_steps_per_second: float
    loop_overhead: Overhead  #: trainer against the evaluating loop
    total_overhead: Overhead  #: trainer against the plain loop


def _trainer_loop(trainer: Trainer) -> Loop:
    def run(steps: int) -> None:
        trainer.run(until=trainer.step + steps)

    return run


class PlainLoop:
    """A hand-written PyTorch loop that trains a trainer's model, data, optimizer and
    filter (never calling the trainer's own loop).

    With ``evaluate``, it evaluates on the trainer's schedule and keeps each evaluation in
    ``history`` as ``[val_loss, val_acc, weight_norm(, train_set_acc)]``, the same numbers
    the trainer records.
    """

    def __init__(self, trainer: Trainer, evaluate: bool) -> None:
        self.trainer, self.config, self.evaluate = trainer, trainer.config, evaluate
        self.step = 0
        self.history: list[list[float]] = []

    @torch.no_grad()
    def evaluation(self) -> list[float]:
        trainer, model = self.trainer, self.trainer.model
        logits = model(trainer.val_inputs)
        metrics = [
            loss_of(logits, trainer.val_targets, trainer.loss_kind).item(),
            (logits.argmax(dim=1) == trainer.val_labels).float().mean().item(),
            torch.cat([p.flatten() for p in model.parameters()]).norm().item(),
        ]
        if not trainer.full_batch:
            train_logits = model(trainer.train_inputs)
            metrics.append((train_logits.argmax(dim=1) == trainer.train_labels).float().mean().item())
        return metrics

    def __call__(self, steps: int) -> None:
        trainer = self.trainer
        model, optimizer = trainer.model, trainer.optimizer
        inputs, targets = trainer.train_inputs, trainer.train_targets
        for _ in range(steps):
            if self.evaluate and self.step % self.config.eval_every == 0:
                self.history.append(self.evaluation())
            for group in optimizer.param_groups:
                group["lr"] = warmup_lr(self.config.lr, self.config.warmup_steps, self.step)
            if trainer.full_batch:
                batch_inputs, batch_targets = inputs, targets
            else:
                order = torch.randperm(len(inputs), generator=trainer.batch_generator)
                index = order[: self.config.batch_size].to(inputs.device, non_blocking=True)
                batch_inputs, batch_targets = inputs[index], targets[index]
            loss = loss_of(model(batch_inputs), batch_targets, trainer.loss_kind)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if trainer.grad_filter is not None:
                trainer.grad_filter.apply(trainer.params)
            optimizer.step()
            self.step += 1


def _page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _timed(run: Loop, steps: int, device: torch.device) -> tuple[float, int]:
    """Seconds and minor page faults of ``steps`` steps."""
    faults, started = _page_faults(), time.perf_counter()
    run(steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, _page_faults() - faults


def measure_throughput(config: TrainConfig, steps: int = 50, rounds: int = 40) -> ThroughputResult:
    """The three loops in ``rounds`` rounds of about ``steps`` steps each.

    ``steps`` is rounded up to a multiple of ``config.eval_every``; ``config.steps`` is
    ignored (the loops run for as long as the rounds last). One untimed round first
    warms the allocator and the kernels.
    """
    steps = math.ceil(steps / config.eval_every) * config.eval_every
    config = dataclasses.replace(config, steps=(rounds + 1) * steps)
    # One model for all three loops: the same tensors at the same addresses, so no loop
    # gains or loses from where its memory happens to lie (a few percent either way).
    trainer = Trainer(config)
    loops = [PlainLoop(trainer, evaluate=False), PlainLoop(trainer, evaluate=True), _trainer_loop(trainer)]
    for run in loops:
        run(steps)
    times: list[list[float]] = [[], [], []]
    faults = [0, 0, 0]
    for round_number in range(rounds):
        order = [(round_number + shift) % 3 for shift in range(3)]
        for index in order:
            seconds, round_faults = _timed(loops[index], steps, trainer.device)
            times[index].append(seconds)
            faults[index] += round_faults
    plain, evaluating, trained = times
    return ThroughputResult(
        steps_per_round=steps,
        page_faults_per_step=tuple(count / (rounds * steps) for count in faults),
        plain_steps_per_second=steps / statistics.median(plain),
        evaluating_steps_per_second=steps / statistics.median(evaluating),
        trainer_steps_per_second=steps / statistics.median(trained),
        loop_overhead=Overhead.of(trained, evaluating),
        total_overhead=Overhead.of(trained, plain),
    )
