"""Counting correct rows without host syncs, cheaply enough to do every training step.

The trainer records the training accuracy of every step (t2 is read from it), so the
count sits in the hot loop. On a CPU its cost is mostly the fixed cost of each small
tensor operation (several microseconds apiece), not arithmetic: on a mini-batch it
outweighs the work, and on full-batch logits a masked copy costs a quarter of it. So the
count masks in place, and :class:`StepCounts` counts the steps of an evaluation interval
together when their logits are small.
"""

from __future__ import annotations

import torch

#: Steps are counted together while their pending logits stay under this many bytes
#: (about a CPU's L2 cache): up to 18 mini-batches of 256 rows x 59 classes (or an
#: evaluation interval, if shorter), the full-batch p = 59 MLP's 1,740 x 59 logits in
#: threes; the quadratic MLP's 4,705 x 97 are counted as they come.
BATCH_BYTES = 1 << 20


def correct_count_(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How many rows the model gets right, as a device tensor; in place: overwrites each
    row's label logit, so call it on logits nobody reads again.

    A row is right when its label's logit is above every other logit. This is
    ``argmax == label`` except on exact ties, which count as wrong (a collapsed model
    with equal logits earns nothing). It is built from ``amax``, which the CPU
    vectorizes (``argmax`` over 97 classes costs ~5x more).
    """
    return _right_rows_(logits, labels).sum()


def correct_count(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """:func:`correct_count_` on a copy: ``logits`` are left as they are."""
    return correct_count_(logits.clone(), labels)


def _right_rows_(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    label_column = labels[:, None]
    label_logits = logits.gather(1, label_column)
    logits.scatter_(1, label_column, float("-inf"))
    return (label_logits > logits.amax(dim=1, keepdim=True)).squeeze(1)


def computed_by_forward(output: torch.Tensor) -> bool:
    """Whether ``output`` (or the tensor it views) was computed by the forward pass, so
    that nothing reads it after backward and it may be overwritten; False for a model
    that returns a view of a parameter or of its input."""
    base = output._base if output._base is not None else output
    return base.grad_fn is not None


class StepCounts:
    """The correct-row counts of consecutive training steps, as one device tensor.

    ``add`` each step's logits (after backward) and labels; ``take`` returns the counts
    of the steps added since the last ``take``, in order. Consecutive steps whose logits
    are small and of one shape are kept and counted in one pass over their concatenation;
    the others are counted at once.

    Example:
        >>> import torch
        >>> counts = StepCounts()
        >>> labels = torch.tensor([0, 1, 1])
        >>> for logits in ([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]], [[0.0, 1.0]] * 3):
        ...     counts.add(torch.tensor(logits), labels)
        >>> counts.take().tolist()
        [2, 2]
    """

    def __init__(self, batch_bytes: int = BATCH_BYTES) -> None:
        self.batch_bytes = batch_bytes
        self._pending: list[tuple[torch.Tensor, torch.Tensor, bool]] = []  # logits, labels, owned
        self._pending_bytes = 0
        self._counted: list[torch.Tensor] = []

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        if self._pending and self._pending[0][0].shape != logits.shape:
            self._count_pending()
        self._pending.append((logits.detach(), labels, computed_by_forward(logits)))
        self._pending_bytes += logits.nelement() * logits.element_size()
        if self._pending_bytes >= self.batch_bytes:
            self._count_pending()

    def take(self) -> torch.Tensor:
        self._count_pending()
        counts = torch.cat(self._counted) if self._counted else torch.zeros(0, dtype=torch.long)
        self._counted = []
        return counts

    def _count_pending(self) -> None:
        if len(self._pending) == 1:
            logits, labels, owned = self._pending[0]
            count = correct_count_ if owned else correct_count
            self._counted.append(count(logits, labels)[None])
        elif self._pending:
            # The concatenation is a copy: masking it in place is always safe.
            logits = torch.cat([logits for logits, _, _ in self._pending])
            labels = torch.cat([labels for _, labels, _ in self._pending])
            self._counted.append(_right_rows_(logits, labels).view(len(self._pending), -1).sum(dim=1))
        self._pending, self._pending_bytes = [], 0
