"""Checkpoint files: a plain dict of tensors and primitives, tagged with format and run.

Loaded with ``torch.load(weights_only=True)``, so a checkpoint cannot run code. A file of
another format version, or of a run whose trajectory-defining settings differ, is refused
with an error that says which.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from grokforecast.errors import CheckpointError

FORMAT = "grokforecast-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": FORMAT, "version": VERSION, **state}, partial)
    os.replace(partial, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, checking format and version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable grokforecast checkpoint ({first_line})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a grokforecast checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {state.get('version')}, this grokforecast "
            f"reads version {VERSION}; rerun the trial from scratch"
        )
    return state
