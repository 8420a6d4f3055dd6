"""Population training: K trials of one architecture trained as one stacked model.

A grokking sweep is hundreds of tiny models, and one small model per process leaves a
core (and a GPU far more) idle on Python and kernel-launch overhead. A
:class:`Population` holds up to ``capacity`` :class:`~grokforecast.training.Trainer`\\ s
of one architecture and trains them together: their parameters are stacked along a
leading dimension, one stacked forward (the model's batched-matmul ``forward_stacked``, or
its ``forward`` under ``torch.func.vmap``) and one backward of the members' summed losses
give every member's gradient, and one AdamW update over the stack applies each member's
own learning rate (after its own warm-up), weight decay and betas. Each member keeps its
own data subset (its data fraction: the batches are stacked in groups of similar length,
:mod:`~grokforecast.training.padding`, and padded rows weigh nothing), mini-batch stream, Grokfast
filter, step count, curves and evaluation, so a member's curves are those it would have
trained alone, to float tolerance (``tests/test_population.py``). Batched matmuls round
differently from single ones (a relative 1e-7 in the first loss); like any change of
kernel, that difference grows over a long run at a high learning rate (to a relative
1e-3 by step 240 on a tiny modular MLP at lr 0.004), not within a probe.

Members come and go: :meth:`Population.admit` takes a trainer (fresh, or resumed from a
checkpoint) into a free slot, :meth:`Population.release` hands it back with its state
written into it (model, optimizer, filter), ready to save, evaluate or train on alone.
A released slot is refilled by the next admission: the population stays full while there
are trials to run.

Example:

    >>> from grokforecast.training import TrainConfig, Trainer
    >>> from grokforecast.training.population import Population
    >>> configs = [TrainConfig(workload_options={"p": 11}, steps=40, eval_every=10, lr=lr)
    ...            for lr in (1e-3, 3e-3)]
    >>> population = Population(capacity=2)
    >>> slots = [population.admit(Trainer(config)) for config in configs]
    >>> statuses = population.run(20)
    >>> [population.member(slot).step for slot in slots], [s.value for s in statuses.values()]
    ([20, 20], ['reached', 'reached'])
    >>> trainer = population.release(slots[0])
    >>> trainer.run().value, trainer.step   # goes on alone from the same state
    ('reached', 40)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Collection, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from grokforecast.errors import ConfigError
from grokforecast.training.grokfast import EMAFilter, MAFilter
from grokforecast.training.padding import SlotRows, StackedBatch
from grokforecast.training.trainer import RunStatus, Trainer, warmup_lr


class Population:
    """Train up to ``capacity`` trainers of one architecture as one stacked model.

    Args:
        capacity: The number of slots K. Every admitted trainer must build the same
            parameter shapes on the same device (one workload and model size) with the
            same loss, and Grokfast's MA filter, where used, the same window.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ConfigError(f"population capacity={capacity} must be at least 1")
        self.capacity = capacity
        self._members: list[Trainer | None] = [None] * capacity
        self._names: list[str] = []
        self._stack: dict[str, torch.Tensor] = {}
        #: Batches gathered from rows that do not change (full batches, evaluation sets),
        #: by the data set (its ``SlotRows``) and the slots they are for, until a slot's
        #: trial changes.
        self._cached: dict[tuple[int, tuple[int, ...]], list[StackedBatch]] = {}

    # -- members ----------------------------------------------------------------------

    @property
    def occupied(self) -> list[int]:
        """The slots holding a trainer."""
        return [slot for slot, member in enumerate(self._members) if member is not None]

    @property
    def free(self) -> list[int]:
        return [slot for slot, member in enumerate(self._members) if member is None]

    def member(self, slot: int) -> Trainer:
        """The trainer in ``slot`` (its parameters are the population's until released)."""
        member = self._members[slot]
        if member is None:
            raise KeyError(f"slot {slot} is empty")
        return member

    def admit(self, trainer: Trainer) -> int:
        """Take ``trainer`` into a free slot, at its current state; returns the slot."""
        if not self.free:
            raise ConfigError(f"the population is full ({self.capacity} trainers); release one first")
        if not self._stack:
            self._build(trainer)
        self._check_fits(trainer)
        slot = self.free[0]
        self._members[slot] = trainer
        self._load_slot(slot, trainer)
        self._cached.clear()
        return slot

    def release(self, slot: int) -> Trainer:
        """Hand back the trainer in ``slot`` with its state written into it; the slot is free."""
        trainer = self.member(slot)
        self._write_back(slot, trainer, optimizer=True)
        self._members[slot] = None
        self._cached.clear()
        return trainer

    def export(self, slot: int) -> Trainer:
        """The trainer in ``slot`` with its state written into it, left in the population
        (to checkpoint it: ``population.export(slot).save(path)``)."""
        trainer = self.member(slot)
        self._write_back(slot, trainer, optimizer=True)
        return trainer

    def bytes_per_member(self) -> int:
        """Memory of one slot's training state: parameters, gradients, AdamW's two moments
        and the Grokfast buffers."""
        tensors = [*self._stack.values(), *self._exp_avg.values(), *self._exp_avg_sq.values()]
        tensors += [*self._ema.values(), *self._ring.values()]
        grads = sum(t.nelement() * t.element_size() for t in self._stack.values())
        return (sum(t.nelement() * t.element_size() for t in tensors) + grads) // self.capacity

    # -- training ---------------------------------------------------------------------

    def run(
        self, steps: int | Mapping[int, int], segment_ends: Collection[int] | None = None
    ) -> dict[int, RunStatus]:
        """Train every member ``steps`` more updates, or each slot of a ``{slot: steps}``
        mapping its own number (the others wait), as ``Trainer.run(until=step + steps)``
        would, evaluations included; a member whose loss diverges stops there.

        A segment's end is evaluated, as ``Trainer.run`` evaluates it; ``segment_ends``
        names the slots whose segment ends here (default: all of them), so that a member
        trained on in a further call is evaluated as one longer segment would be.
        """
        planned = steps if isinstance(steps, Mapping) else dict.fromkeys(self.occupied, steps)
        until = {slot: self.member(slot).step + n for slot, n in planned.items()}
        ends = set(until) if segment_ends is None else set(segment_ends)
        status = {slot: RunStatus.REACHED for slot in until}
        pending = {slot: ([], []) for slot in until}
        for slot in until:
            if self.member(slot).diverged_at is not None:
                status[slot] = RunStatus.DIVERGED
        while True:
            active = [s for s in until if status[s] is RunStatus.REACHED and self.member(s).step < until[s]]
            if not active:
                break
            self._evaluate([s for s in active if self._due(s)])
            losses, correct = self._train_step(active)
            for slot in active:
                member = self.member(slot)
                slot_losses, slot_correct = pending[slot]
                slot_losses.append(losses[slot])
                slot_correct.append(correct[slot])
                member.step += 1
                if len(slot_losses) == member.config.eval_every or member.step == until[slot]:
                    member._record_train(slot_losses, torch.stack(slot_correct))
                    pending[slot] = ([], [])
                    if member.diverged_at is not None:
                        status[slot] = RunStatus.DIVERGED
        ended = [s for s in until if s in ends and status[s] is RunStatus.REACHED]
        self._evaluate([s for s in ended if not self.member(s)._evaluated(self.member(s).step)])
        return status

    def _due(self, slot: int) -> bool:
        """Whether ``slot``'s trainer evaluates before its next step, as it would alone."""
        member = self.member(slot)
        return member.step % member.config.eval_every == 0 and not member._evaluated(member.step)

    def _train_step(self, active: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One update of every slot in ``active``; returns every slot's loss and correct
        rows (the inactive slots' are meaningless)."""
        losses = torch.zeros(self.capacity, device=self._device)
        correct = torch.zeros(self.capacity, dtype=torch.long, device=self._device)
        total = torch.zeros((), device=self._device)
        for group in self._batches(active):
            logits = self._logits(self._params_of(group), group.inputs)
            loss = self._losses(group, logits)
            total = total + loss.sum()
            with torch.no_grad():
                losses[group.lanes] = loss.detach()
                correct[group.lanes] = _right_rows(logits.detach(), group.labels).mul(group.rows).sum(dim=1)
        # The slots' losses share no parameter: the gradient of their sum is each one's own.
        leaves = list(self._stack.values())
        grads = dict(
            zip(self._names, torch.autograd.grad(total, leaves, materialize_grads=True), strict=True)
        )
        with torch.no_grad():
            mask = torch.zeros(self.capacity, dtype=torch.bool, device=self._device)
            mask[list(active)] = True
            self._filter(grads, mask)
            self._adamw(grads, mask, active)
        return losses, correct

    def _params_of(self, group: StackedBatch) -> Mapping[str, torch.Tensor]:
        """The stacked parameters of ``group``'s slots, in the group's order (the whole
        stack only when that is every slot in the stack's own order)."""
        if group.slots == tuple(range(self.capacity)):
            return self._stack
        return {name: t.index_select(0, group.lanes) for name, t in self._stack.items()}

    def _logits(self, params: Mapping[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """Stacked slots' logits on their inputs (``[slots, rows, ...]``): the model's
        batched-matmul ``forward_stacked`` where it has one, else its ``forward`` under
        ``vmap``."""
        stacked = getattr(self._skeleton, "forward_stacked", None)
        if stacked is not None:
            return stacked(params, inputs)

        def slot_logits(slot_params: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(self._skeleton, (slot_params, self._buffers), (x,))

        return vmap(slot_logits)(dict(params), inputs)

    def _losses(self, group: StackedBatch, logits: torch.Tensor) -> torch.Tensor:
        """Each slot's mean loss over its rows of ``group``, as the trainer's loss."""
        if self._loss_kind == "mse":
            per_row = ((logits - group.targets) ** 2).mean(dim=-1)
        else:
            per_row = F.cross_entropy(logits.flatten(0, 1), group.targets.flatten(), reduction="none")
        return (per_row.view(group.weights.shape) * group.weights).sum(dim=1)

    def _batches(self, active: Sequence[int]) -> list[StackedBatch]:
        """The active slots' next batches, grouped by length; full batches are gathered
        once, until a slot's trial changes."""
        if all(self.member(slot).full_batch for slot in active):
            return self._every_row(self._train, active)
        return self._train.batches(active, [self._rows_of(slot) for slot in active])

    def _every_row(self, rows: SlotRows, slots: Sequence[int]) -> list[StackedBatch]:
        key = (id(rows), tuple(slots))
        if key not in self._cached:
            self._cached[key] = rows.batches(slots, [rows.every_row(slot) for slot in slots])
        return self._cached[key]

    def _rows_of(self, slot: int) -> torch.Tensor:
        """The training rows of the slot's next mini-batch (drawn as its trainer draws them)."""
        member = self.member(slot)
        n = len(member.train_labels)
        order = torch.randperm(n, generator=member.batch_generator)
        return order[: member.config.batch_size].to(self._device, non_blocking=True)

    @torch.no_grad()
    def _filter(self, grads: dict[str, torch.Tensor], active: torch.Tensor) -> None:
        """Each slot's Grokfast filter, over the stack (a slot without one has lamb 0)."""
        for name, g in grads.items():
            if self._ema_used:
                mu = self._ema[name]
                alpha = _lanes(self._ema_alpha, g)
                started = _lanes(self._ema_started, g)
                averaged = torch.where(started, mu * alpha + g * (1 - alpha), g)
                mu.copy_(torch.where(_lanes(active, g), averaged, mu))
                g.add_(mu * _lanes(self._ema_lamb, g))
            if self._ring:
                ring, window = self._ring[name], self._window
                positions = self._ma_count % window
                lanes = torch.arange(self.capacity, device=self._device)
                ring[lanes[active], positions[active]] = g[active]
                full = _lanes((self._ma_count + 1 >= window) & active, g)
                g.add_(torch.where(full, ring.mean(dim=1), 0.0) * _lanes(self._ma_lamb, g))
        if self._ema_used:
            self._ema_started |= active & self._uses_ema
        if self._ring:
            self._ma_count += (active & self._uses_ma).long()

    @torch.no_grad()
    def _adamw(self, grads: dict[str, torch.Tensor], active: torch.Tensor, slots: Sequence[int]) -> None:
        """AdamW's update with every slot's own settings (``torch.optim.AdamW``'s formula),
        in place. An inactive slot's coefficients (no decay, no step, moments kept) leave
        its state exactly as it is."""
        for slot in slots:
            member = self.member(slot)
            self._lr[slot] = warmup_lr(member.config.lr, member.config.warmup_steps, member.step)
        self._steps += active.double()
        steps = self._steps.clamp(min=1)
        beta1, beta2 = self._beta1.float(), self._beta2.float()
        decay = torch.where(active, (1 - self._lr * self._weight_decay).float(), 1.0)
        step_size = torch.where(active, (self._lr / (1 - self._beta1**steps)).float(), 0.0)
        correction2 = (1 - self._beta2**steps).sqrt().float()
        average1 = torch.where(active, 1 - beta1, 0.0)
        keep2, average2 = torch.where(active, beta2, 1.0), torch.where(active, 1 - beta2, 0.0)
        for name, p in self._stack.items():
            g, m, v = grads[name], self._exp_avg[name], self._exp_avg_sq[name]
            p.mul_(_lanes(decay, p))
            m.lerp_(g, _lanes(average1, p))
            v.mul_(_lanes(keep2, p)).add_(g * g * _lanes(average2, p))
            denom = v.sqrt().div_(_lanes(correction2, p)).add_(self._eps)
            p.sub_(_lanes(step_size, p) * (m / denom))  # as addcdiv rounds

    @torch.no_grad()
    def _evaluate(self, slots: Sequence[int]) -> None:
        """Evaluate ``slots`` at their current steps, as their trainers would alone: the
        validation loss and accuracy, the weight norm, and the accuracy on the whole
        training set of a mini-batched trial."""
        if not slots:
            return
        val_loss, val_acc = self._scores(self._val, slots)
        norms = self._weight_norms(slots)
        mini_batched = [slot for slot in slots if not self.member(slot).full_batch]
        train_set_acc = dict(
            zip(mini_batched, self._scores(self._train, mini_batched)[1].tolist(), strict=True)
        )
        values = torch.stack([val_loss, val_acc, norms], dim=1).tolist()
        for slot, slot_values in zip(slots, values, strict=True):
            self.member(slot)._record_evaluation(*slot_values, train_set_acc=train_set_acc.get(slot))

    def _scores(self, rows: SlotRows, slots: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each of ``slots``' mean loss and accuracy on all its ``rows``, in order."""
        loss = torch.zeros(self.capacity, device=self._device)
        accuracy = torch.zeros(self.capacity, device=self._device)  # float32, as the trainer's
        for group in self._every_row(rows, slots):
            logits = self._logits(self._params_of(group), group.inputs)
            loss[group.lanes] = self._losses(group, logits)
            right = _right_rows(logits, group.labels).mul(group.rows).sum(dim=1)
            accuracy[group.lanes] = right / group.rows.sum(dim=1)
        lanes = torch.tensor(slots, dtype=torch.long, device=self._device)
        return loss[lanes], accuracy[lanes]

    def _weight_norms(self, slots: Sequence[int]) -> torch.Tensor:
        """The L2 norm of each of ``slots``' parameters together (``total_weight_norm``)."""
        lanes = torch.tensor(slots, dtype=torch.long, device=self._device)
        norms = [torch.linalg.vector_norm(t[lanes].flatten(1), dim=1) for t in self._stack.values()]
        return torch.linalg.vector_norm(torch.stack(norms), dim=0)

    # -- the stack ----------------------------------------------------------------------

    def _build(self, first: Trainer) -> None:
        """The stacked tensors, shaped after the first trainer admitted."""
        k, device = self.capacity, first.device
        self._device = device
        self._skeleton = copy.deepcopy(first.model)  # the module functional_call runs
        named = dict(first.model.named_parameters())
        self._names = list(named)
        self._buffers = {name: b.detach().clone() for name, b in first.model.named_buffers()}
        # Leaves of autograd: one backward of the slots' summed losses gives every gradient.
        self._stack = {
            name: p.detach().new_zeros((k, *p.shape)).requires_grad_() for name, p in named.items()
        }
        self._exp_avg = {name: torch.zeros_like(s) for name, s in self._stack.items()}
        self._exp_avg_sq = {name: torch.zeros_like(s) for name, s in self._stack.items()}
        self._loss_kind = first.loss_kind
        self._input_shape = tuple(first.train_inputs.shape[1:])
        self._train = SlotRows(k, first.train_inputs, first.train_targets)
        self._val = SlotRows(k, first.val_inputs, first.val_targets)
        double = {"dtype": torch.float64, "device": device}
        self._lr, self._weight_decay = torch.zeros(k, **double), torch.zeros(k, **double)
        self._beta1, self._beta2 = torch.zeros(k, **double), torch.zeros(k, **double)
        self._steps = torch.zeros(k, **double)
        self._eps = 1e-8  # torch.optim.AdamW's default, which the trainer uses
        self._ema: dict[str, torch.Tensor] = {}
        self._ema_used = False
        self._ema_alpha, self._ema_lamb = torch.zeros(k, device=device), torch.zeros(k, device=device)
        self._ema_started = torch.zeros(k, dtype=torch.bool, device=device)
        self._uses_ema = torch.zeros(k, dtype=torch.bool, device=device)
        self._ring: dict[str, torch.Tensor] = {}
        self._window = 0
        self._ma_lamb = torch.zeros(k, device=device)
        self._ma_count = torch.zeros(k, dtype=torch.long, device=device)
        self._uses_ma = torch.zeros(k, dtype=torch.bool, device=device)

    def _check_fits(self, trainer: Trainer) -> None:
        shapes = {name: tuple(p.shape) for name, p in trainer.model.named_parameters()}
        expected = {name: tuple(s.shape[1:]) for name, s in self._stack.items()}
        problems = []
        if shapes != expected:
            problems.append("its model has other parameters (another workload or model size)")
        if trainer.device != self._device:
            problems.append(f"it trains on {trainer.device}, the population on {self._device}")
        if trainer.loss_kind != self._loss_kind:
            problems.append(f"its loss is {trainer.loss_kind}, the population's {self._loss_kind}")
        if tuple(trainer.train_inputs.shape[1:]) != self._input_shape:
            problems.append("its inputs have another shape")
        window = trainer.config.grokfast_window
        if trainer.config.grokfast == "ma" and self._window and window != self._window:
            problems.append(f"its Grokfast window is {window}, the population's {self._window}")
        if problems:
            raise ConfigError(
                f"{trainer.config.workload} trial cannot join this population: {'; '.join(problems)}"
            )

    def _load_slot(self, slot: int, trainer: Trainer) -> None:
        """Copy a trainer's whole state into ``slot``."""
        self._train.put(slot, trainer.train_inputs, trainer.train_targets, trainer.train_labels)
        self._val.put(slot, trainer.val_inputs, trainer.val_targets, trainer.val_labels)
        config = trainer.config
        self._weight_decay[slot] = config.weight_decay
        self._beta1[slot], self._beta2[slot] = config.beta1, config.beta2
        state = trainer.optimizer.state
        with torch.no_grad():
            for name, p in zip(self._names, trainer.params, strict=True):
                self._stack[name][slot] = p.detach()
                moments = state.get(p, {})
                self._exp_avg[name][slot] = moments.get("exp_avg", torch.zeros_like(p))
                self._exp_avg_sq[name][slot] = moments.get("exp_avg_sq", torch.zeros_like(p))
        first = state.get(trainer.params[0], {}) if trainer.params else {}
        self._steps[slot] = float(first.get("step", 0.0))
        self._load_filter(slot, trainer)

    def _load_filter(self, slot: int, trainer: Trainer) -> None:
        grad_filter, config = trainer.grad_filter, trainer.config
        self._uses_ema[slot] = isinstance(grad_filter, EMAFilter)
        self._uses_ma[slot] = isinstance(grad_filter, MAFilter)
        self._ema_lamb[slot] = self._ma_lamb[slot] = 0.0
        if isinstance(grad_filter, EMAFilter):
            if not self._ema_used:
                self._ema = {name: torch.zeros_like(s) for name, s in self._stack.items()}
                self._ema_used = True
            self._ema_alpha[slot], self._ema_lamb[slot] = grad_filter.alpha, grad_filter.lamb
            self._ema_started[slot] = bool(grad_filter.averages)
            for name, mu in zip(self._names, grad_filter.averages, strict=False):
                self._ema[name][slot] = mu
        if isinstance(grad_filter, MAFilter):
            if not self._ring:
                self._window = config.grokfast_window
                self._ring = {
                    name: s.new_zeros((self.capacity, self._window, *s.shape[1:]))
                    for name, s in self._stack.items()
                }
            self._ma_lamb[slot] = grad_filter.lamb
            self._ma_count[slot] = grad_filter.count
            for name in self._names:
                self._ring[name][slot] = 0.0
            for name, ring in zip(self._names, grad_filter.history, strict=False):
                self._ring[name][slot] = ring

    @torch.no_grad()
    def _write_back(self, slot: int, trainer: Trainer, optimizer: bool) -> None:
        """Copy ``slot``'s state into its trainer: the parameters, and with ``optimizer``
        AdamW's moments and step and the Grokfast filter's state, in the trainer's own
        formats (so that its checkpoint is the one it would have written alone)."""
        for name, p in zip(self._names, trainer.params, strict=True):
            p.copy_(self._stack[name][slot])
        if not optimizer:
            return
        steps = float(self._steps[slot])
        if steps:
            for name, p in zip(self._names, trainer.params, strict=True):
                trainer.optimizer.state[p] = {
                    "step": torch.tensor(steps),
                    "exp_avg": self._exp_avg[name][slot].clone(),
                    "exp_avg_sq": self._exp_avg_sq[name][slot].clone(),
                }
        for group in trainer.optimizer.param_groups:
            group["lr"] = float(self._lr[slot]) if steps else group["lr"]
        grad_filter = trainer.grad_filter
        if isinstance(grad_filter, EMAFilter) and bool(self._ema_started[slot]):
            grad_filter.averages = [self._ema[name][slot].clone() for name in self._names]
        if isinstance(grad_filter, MAFilter) and int(self._ma_count[slot]):
            grad_filter.history = [self._ring[name][slot].clone() for name in self._names]
            grad_filter.count = int(self._ma_count[slot])


def training_state_bytes(trainer: Trainer) -> int:
    """A lone trainer's parameters, gradients and AdamW's two moments, in bytes."""
    return 4 * sum(p.nelement() * p.element_size() for p in trainer.params)


def _lanes(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-slot ``values`` shaped to broadcast over a stacked tensor ``like``."""
    return values.view(-1, *[1] * (like.dim() - 1))


def _right_rows(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Which rows each slot gets right (``[K, rows]``), as the trainer counts them: the
    label's logit above every other (ties count as wrong)."""
    label_logits = logits.gather(-1, labels[..., None])
    others = logits.scatter(-1, labels[..., None], -math.inf)
    return (label_logits > others.amax(dim=-1, keepdim=True)).squeeze(-1)
