"""The training loop: one configuration, run in segments, continued from its own state.

Read :meth:`Trainer.run` top to bottom: evaluation at an interval, learning-rate warm-up,
forward, backward, Grokfast filter, step, record. Per-step metrics (the loss and the
number of correct rows, counted as cheaply as :mod:`~grokforecast.training.accuracy`
knows) stay on the device and cross to the host in one batch per evaluation interval, so
the loop never waits on the GPU per step.

A run can stop at any step and go on later from the same state (``run(until=...)`` twice,
or through a checkpoint): a probe of ``k`` steps extended to ``n`` equals a run of ``n``
steps, bit for bit on the CPU.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from grokforecast.curves import Curves, GrokTimes, grok_times
from grokforecast.errors import CheckpointError, ConfigError
from grokforecast.training.accuracy import StepCounts, correct_count
from grokforecast.training.checkpoint import load_checkpoint, save_checkpoint
from grokforecast.training.config import TrainConfig
from grokforecast.training.cpu_process import tune_for_training_on
from grokforecast.training.grokfast import make_filter
from grokforecast.training.workloads import Problem, problem_for


class RunStatus(enum.Enum):
    """How a run segment ended."""

    REACHED = "reached"  #: trained up to the requested step
    DIVERGED = "diverged"  #: a loss became NaN or infinite; the run cannot go on


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when it is available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use 'auto', 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but CUDA is not available; use 'auto' or 'cpu'")
    return device


def warmup_lr(base_lr: float, warmup_steps: int, step: int) -> float:
    """Linear warm-up over the first ``warmup_steps`` updates, then constant."""
    return base_lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else base_lr


def loss_of(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss: cross-entropy on labels, or MSE on one-hot targets."""
    return F.mse_loss(logits, targets) if kind == "mse" else F.cross_entropy(logits, targets)


def total_weight_norm(model: torch.nn.Module) -> torch.Tensor:
    """The L2 norm of all parameters together (Omnigrok's w)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p) for p in model.parameters()]))


EvalCallback = Callable[["Trainer"], None]
#: Held while a trainer seeds torch's global generator and builds its model from it: trainers
#: built at once in several threads (a worker's population) would otherwise draw from
#: each other's seeds.
_GLOBAL_RNG = threading.Lock()


class Trainer:
    """Train one :class:`TrainConfig`, in as many segments as the caller wants.

    Example:
        >>> from grokforecast.training import TrainConfig, Trainer
        >>> config = TrainConfig(workload_options={"p": 11}, steps=40, eval_every=10)
        >>> trainer = Trainer(config)
        >>> trainer.run(until=20).value, trainer.run().value, trainer.step
        ('reached', 'reached', 40)
        >>> len(trainer.curves.train_loss), trainer.curves.eval_steps
        (40, [0, 10, 20, 30, 40])
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        tune_for_training_on(self.device)
        with _GLOBAL_RNG:  # the model is built from torch's global generator, seeded here
            torch.manual_seed(config.seed)
            problem = problem_for(config)
        self.model = problem.model.to(self.device)
        with torch.no_grad():
            for parameter in self.model.parameters():
                parameter.mul_(config.init_scale)
        self._load_data(problem)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=config.lr,
            weight_decay=config.weight_decay,
            betas=(config.beta1, config.beta2),
        )
        self.grad_filter = make_filter(
            config.grokfast, config.grokfast_alpha, config.filter_lamb, config.grokfast_window
        )
        self.batch_generator = torch.Generator().manual_seed(config.seed + 1)
        self.step = 0
        self.curves = Curves()
        self.diverged_at: int | None = None

    def _load_data(self, problem: Problem) -> None:
        data, device = problem.data, self.device
        self.loss_kind = problem.loss
        self.train_inputs, self.train_labels = data.train_inputs.to(device), data.train_labels.to(device)
        self.val_inputs, self.val_labels = data.val_inputs.to(device), data.val_labels.to(device)
        if problem.loss == "mse":
            self.train_targets = F.one_hot(self.train_labels, problem.num_classes).float()
            self.val_targets = F.one_hot(self.val_labels, problem.num_classes).float()
        else:
            self.train_targets, self.val_targets = self.train_labels, self.val_labels
        batch = self.config.batch_size
        self.full_batch = batch is None or batch >= len(self.train_labels)
        self.batch_rows = len(self.train_labels) if self.full_batch else batch

    # -- the loop ---------------------------------------------------------------------

    def run(self, until: int | None = None, on_eval: EvalCallback | None = None) -> RunStatus:
        """Train from the current step up to step ``until`` (default: the config's budget).

        ``on_eval(trainer)`` is called after every evaluation, when the curves are complete
        up to ``trainer.step``; it may read them, save a checkpoint or report progress.
        """
        until = self.config.steps if until is None else until
        if self.diverged_at is not None:
            return RunStatus.DIVERGED
        losses: list[torch.Tensor] = []  # this interval's per-step losses, still on the device
        correct = StepCounts()  # and its per-step correct rows
        while self.step < until:
            if self.step % self.config.eval_every == 0 and not self._evaluated(self.step):
                self._evaluate(on_eval)
            lr = warmup_lr(self.config.lr, self.config.warmup_steps, self.step)
            loss, logits, labels = self.train_step(lr)
            losses.append(loss)
            correct.add(logits, labels)
            self.step += 1
            if len(losses) == self.config.eval_every or self.step == until:
                self._record_train(losses, correct.take())
                losses = []
                if self.diverged_at is not None:
                    return RunStatus.DIVERGED
        if not self._evaluated(self.step):
            self._evaluate(on_eval)
        return RunStatus.REACHED

    def train_step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer update; returns the batch's loss (detached), logits and labels,
        as device tensors."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        inputs, targets, labels = self._batch()
        logits = self.model(inputs)
        loss = loss_of(logits, targets, self.loss_kind)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_filter is not None:
            self.grad_filter.apply(self.params)
        self.optimizer.step()
        return loss.detach(), logits, labels

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.full_batch:
            return self.train_inputs, self.train_targets, self.train_labels
        order = torch.randperm(len(self.train_labels), generator=self.batch_generator)
        index = order[: self.config.batch_size].to(self.device, non_blocking=True)
        labels = self.train_labels[index]
        targets = labels if self.train_targets is self.train_labels else self.train_targets[index]
        return self.train_inputs[index], targets, labels

    def _record_train(self, losses: list[torch.Tensor], correct: torch.Tensor) -> None:
        # The host transfers of one evaluation interval, batched.
        loss_values = torch.stack(losses).tolist()
        batch_rows = self.batch_rows
        first_step = len(self.curves.train_loss)
        self.curves.train_loss.extend(loss_values)
        self.curves.train_acc.extend(hits / batch_rows for hits in correct.tolist())
        bad = [i for i, value in enumerate(loss_values) if not math.isfinite(value)]
        if bad:
            self.diverged_at = first_step + bad[0]

    @torch.no_grad()
    def _evaluate(self, on_eval: EvalCallback | None) -> None:
        val_logits = self.model(self.val_inputs)
        values = [
            loss_of(val_logits, self.val_targets, self.loss_kind),
            correct_count(val_logits, self.val_labels) / len(self.val_labels),
            total_weight_norm(self.model),
        ]
        if not self.full_batch:
            values.append(
                correct_count(self.model(self.train_inputs), self.train_labels) / len(self.train_labels)
            )
        self._record_evaluation(*torch.stack(values).tolist(), on_eval=on_eval)

    def _record_evaluation(
        self,
        val_loss: float,
        val_acc: float,
        weight_norm: float,
        train_set_acc: float | None = None,
        on_eval: EvalCallback | None = None,
    ) -> None:
        """Append an evaluation at the current step (``train_set_acc`` when mini-batched)."""
        self.curves.eval_steps.append(self.step)
        self.curves.val_loss.append(val_loss)
        self.curves.val_acc.append(val_acc)
        self.curves.weight_norm.append(weight_norm)
        if train_set_acc is not None:
            self.curves.train_set_acc.append(train_set_acc)
        if on_eval is not None:
            on_eval(self)

    def _evaluated(self, step: int) -> bool:
        return bool(self.curves.eval_steps) and self.curves.eval_steps[-1] == step

    # -- results ------------------------------------------------------------------------

    def grok_times(self) -> GrokTimes:
        return grok_times(self.curves, self.config.grok_threshold)

    def summary(self) -> dict[str, Any]:
        """Steps, t2, t4, grokked and final accuracies: what a person asks after a run."""
        times = self.grok_times()
        curves = self.curves
        return {
            "steps": self.step,
            "t2": times.t2,
            "t4": times.t4,
            "grokked": times.grokked,
            "diverged_at": self.diverged_at,
            "final_train_acc": curves.train_acc[-1] if curves.train_acc else None,
            "final_val_acc": curves.val_acc[-1] if curves.val_acc else None,
            "final_weight_norm": curves.weight_norm[-1] if curves.weight_norm else None,
        }

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to go on: model, optimizer, filter, RNG, step, curves."""
        return {
            "fingerprint": self.config.fingerprint(),
            "config": self.config.to_dict(),
            "step": self.step,
            "diverged_at": self.diverged_at,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "grad_filter": self.grad_filter.state_dict() if self.grad_filter else None,
            "batch_generator": self.batch_generator.get_state(),
            "curves": self.curves.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["fingerprint"] != self.config.fingerprint():
            stored = TrainConfig.from_dict(state["config"])
            differences = ", ".join(
                f"{k}={getattr(stored, k)!r} (this run: {getattr(self.config, k)!r})"
                for k in self.config.trajectory_differences(stored)
            )
            raise CheckpointError(f"checkpoint belongs to another run: {differences or 'other settings'}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.grad_filter is not None:
            self.grad_filter.load_state_dict(state["grad_filter"])
        self.batch_generator.set_state(state["batch_generator"])
        self.step = state["step"]
        self.diverged_at = state["diverged_at"]
        self.curves = Curves.from_dict(state["curves"])

    def save(self, path: str | Path, keep_previous: bool = False) -> None:
        """Checkpoint to ``path`` (keeping the file it replaces with ``keep_previous``:
        :func:`~grokforecast.training.checkpoint.save_checkpoint`)."""
        save_checkpoint(path, self.state_dict(), keep_previous)

    @classmethod
    def resume(cls, path: str | Path, config: TrainConfig | None = None) -> Trainer:
        """A trainer continued from a checkpoint.

        With ``config``, the checkpoint must belong to it (only the budget, device and
        grok threshold may differ); without, the checkpoint's own settings are used.
        """
        state = load_checkpoint(path)
        trainer = cls(config or TrainConfig.from_dict(state["config"]))
        trainer.load_state_dict(state)
        return trainer
