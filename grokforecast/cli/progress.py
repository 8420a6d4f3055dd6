"""Progress bars for the command line (the library itself only logs)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from grokforecast.training import Trainer


class TrainProgress:
    """A step bar showing validation accuracy, updated at each evaluation."""

    def __init__(self, trainer: Trainer) -> None:
        self._bar = tqdm(total=trainer.config.steps, initial=trainer.step, unit="step", dynamic_ncols=True)

    def update(self, trainer: Trainer) -> None:
        self._bar.update(trainer.step - self._bar.n)
        self._bar.set_postfix(val_acc=f"{trainer.curves.val_acc[-1]:.3f}", refresh=False)

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.close()
