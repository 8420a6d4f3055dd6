"""Grouping a population's batches by length, so that padding wastes little compute.

A stacked forward pads every slot's batch to the longest one, and a population's trials
differ in data fraction: with fractions drawn from 0.2-0.7, a third of the stacked
matmuls' work is padding. Cutting the slots, ordered by batch length, into a few groups
(one stacked forward each) pads each group only to its own longest batch; every extra
group costs a forward's fixed overhead. :func:`padding_groups` chooses the cut that
minimises the two together, exactly (dynamic programming over the ordered lengths).

Example:

    >>> padding_groups([100, 700, 120, 680], group_cost=50)
    [[0, 2], [3, 1]]
    >>> padding_groups([100, 700, 120, 680], group_cost=10_000)
    [[0, 2, 3, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
