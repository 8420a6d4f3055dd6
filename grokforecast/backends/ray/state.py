"""Saving a Tune scheduler's or searcher's state to the file Tune names, and back."""

from __future__ import annotations

import pickle
from typing import Any


class SavesStateToFile:
    """``save`` and ``restore`` (what Tune calls with a checkpoint path) over the class's
    own ``get_state`` and ``set_state``."""

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.get_state(), file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.set_state(pickle.load(file))
