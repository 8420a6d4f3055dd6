"""A population's data: every slot's rows in one padded stack, batches grouped by length.

A stacked forward pads every slot's batch to the longest one, and a population's trials
differ in data fraction: with fractions drawn from 0.2-0.7, a third of the stacked
matmuls' work is padding. Cutting the slots, ordered by batch length, into a few groups
(one stacked forward each) pads each group only to its own longest batch; every extra
group costs a forward's fixed overhead. :func:`padding_groups` chooses the cut that
minimises the two together, exactly (dynamic programming over the ordered lengths), and
:meth:`SlotRows.batches` gathers the groups' rows from a :class:`SlotRows` stack.

Example:

    >>> padding_groups([100, 700, 120, 680], group_cost=50)
    [[0, 2], [3, 1]]
    >>> padding_groups([100, 700, 120, 680], group_cost=10_000)
    [[0, 2, 3, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: What one more group of batches costs (a stacked forward's fixed overhead), as a share of
#: the rows of all the batches: ~0.3 ms on a 2-core CPU against 64 small trials' rows.
GROUP_COST = 0.05


def padding_groups(lengths: Sequence[int], group_cost: float) -> list[list[int]]:
    """The indices of ``lengths`` cut into groups of similar length.

    Minimises the padded rows (each group: its size times its longest length) plus
    ``group_cost`` rows for every group; groups are in order of length, shortest first.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if not order:
        return []
    sorted_lengths = np.array([lengths[i] for i in order], dtype=float)
    n = len(order)
    # best[j]: the least cost of the first j slots in order; cut[j]: where their last group starts.
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    cut = np.zeros(n + 1, dtype=int)
    starts = np.arange(n)
    for j in range(1, n + 1):
        # The last group is order[i:j], padded to its longest, sorted_lengths[j - 1].
        costs = best[:j] + (j - starts[:j]) * sorted_lengths[j - 1] + group_cost
        cut[j] = int(np.argmin(costs))
        best[j] = costs[cut[j]]
    groups = []
    j = n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


@dataclass(frozen=True)
class StackedBatch:
    """Slots whose batches are stacked together, padded to the group's longest."""

    slots: tuple[int, ...]
    lanes: torch.Tensor  # the slots, as an index into the population's stack
    inputs: torch.Tensor  # [slots, rows, ...]
    targets: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor  # 1 / rows on a slot's rows, 0 on padding: a weighted sum is the mean

    @property
    def rows(self) -> torch.Tensor:
        """Which entries are a slot's rows (not padding)."""
        return self.weights > 0


class SlotRows:
    """Every slot's rows of one data set (its training or its validation set), stacked
    along a leading slot dimension and padded to the longest set stored so far."""

    def __init__(self, capacity: int, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Shaped after one slot's ``inputs`` and ``targets`` (their rows, dtypes, device)."""
        self.capacity, self.device = capacity, inputs.device
        self._inputs = inputs.new_zeros((capacity, 0, *inputs.shape[1:]))
        self._targets = targets.new_zeros((capacity, 0, *targets.shape[1:]))
        self._labels = torch.zeros((capacity, 0), dtype=torch.long, device=self.device)
        self._lengths = [0] * capacity

    def put(self, slot: int, inputs: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> None:
        """Store ``slot``'s rows (growing the padding for a larger set than any so far)."""
        n = len(labels)
        self._inputs, self._targets, self._labels = (
            _padded_to(stack, n) for stack in (self._inputs, self._targets, self._labels)
        )
        self._inputs[slot, :n], self._targets[slot, :n], self._labels[slot, :n] = inputs, targets, labels
        self._lengths[slot] = n

    def every_row(self, slot: int) -> torch.Tensor:
        """The indices of all of ``slot``'s rows."""
        return torch.arange(self._lengths[slot], device=self.device)

    def batches(self, slots: Sequence[int], rows: Sequence[torch.Tensor]) -> list[StackedBatch]:
        """The ``rows`` of each of ``slots`` (index tensors, in order), stacked in groups of
        similar length (:func:`padding_groups`)."""
        lengths = [len(slot_rows) for slot_rows in rows]
        groups = []
        for by_length in padding_groups(lengths, GROUP_COST * sum(lengths)):
            members = sorted(by_length, key=lambda i: slots[i])  # a full group is the stack's order
            width = max(lengths[i] for i in members)
            index = torch.zeros(len(members), width, dtype=torch.long, device=self.device)
            weights = torch.zeros(len(members), width, device=self.device)
            for lane, i in enumerate(members):
                index[lane, : lengths[i]] = rows[i]
                weights[lane, : lengths[i]] = 1.0 / max(lengths[i], 1)
            group_slots = tuple(slots[i] for i in members)
            lanes = torch.tensor(group_slots, dtype=torch.long, device=self.device)
            column = lanes[:, None]
            groups.append(
                StackedBatch(
                    group_slots,
                    lanes,
                    self._inputs[column, index],
                    self._targets[column, index],
                    self._labels[column, index],
                    weights,
                )
            )
        return groups


def _padded_to(stack: torch.Tensor, rows: int) -> torch.Tensor:
    """``stack`` (``[slots, rows, ...]``) with zero rows appended up to ``rows``."""
    extra = rows - stack.shape[1]
    if extra <= 0:
        return stack
    return torch.cat([stack, stack.new_zeros((stack.shape[0], extra, *stack.shape[2:]))], 1)
