"""Checkpoint files: a plain dict of tensors and primitives, tagged, checksummed, verified.

Loaded with ``torch.load(weights_only=True)``, so a checkpoint cannot run code. Written
atomically (a crash mid-write leaves the previous file intact), with a SHA-256 digest of
its contents; on load the digest, the format version, the keys a trainer needs and the
finiteness of the model and optimizer tensors are checked, so that a corrupted or
foreign file is refused with an error naming what is wrong instead of training on
garbage. With ``keep_previous`` the file it replaces is kept beside it
(:func:`previous_of`), for a fallback when the newest one turns out bad.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from grokforecast.errors import CheckpointError

FORMAT = "grokforecast-checkpoint"
VERSION = 2
#: What a trainer reads back from a checkpoint.
REQUIRED_KEYS = ("fingerprint", "config", "step", "model", "optimizer", "curves")
_ENVELOPE = ("format", "version", "sha256")


def previous_of(path: str | Path) -> Path:
    """Where ``save_checkpoint(path, keep_previous=True)`` keeps the file it replaced."""
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def save_checkpoint(path: str | Path, state: dict[str, Any], keep_previous: bool = False) -> None:
    """Write ``state`` atomically, with its digest; keep the replaced file if asked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": FORMAT, "version": VERSION, "sha256": digest(state), **state}, partial)
    if keep_previous and path.exists():
        os.replace(path, previous_of(path))
    os.replace(partial, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying it (see the module)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable grokforecast checkpoint ({first_line})") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a grokforecast checkpoint")
    if stored.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {stored.get('version')}, this grokforecast "
            f"reads version {VERSION}; rerun the trial from scratch"
        )
    state = {key: value for key, value in stored.items() if key not in _ENVELOPE}
    if digest(state) != stored.get("sha256"):
        raise CheckpointError(f"{path} is corrupted: its contents do not match their checksum")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    for part in ("model", "optimizer"):
        if not _all_finite(state[part]):
            raise CheckpointError(f"{path} holds NaN or infinite values in its {part} state")
    return state


def digest(value: Any) -> str:
    """SHA-256 of a checkpoint's contents: tensors by dtype, shape and bytes, mappings in
    key order, everything else by its repr; independent of how ``torch.save`` lays it out."""
    hasher = hashlib.sha256()
    _feed(hasher, value)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"tensor {tensor.dtype} {tuple(tensor.shape)}:".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        hasher.update(f"map {len(value)}:".encode())
        for key in sorted(value, key=repr):
            hasher.update(repr(key).encode())
            _feed(hasher, value[key])
    elif isinstance(value, list | tuple):
        hasher.update(f"{type(value).__name__} {len(value)}:".encode())
        for item in value:
            _feed(hasher, item)
    else:
        hasher.update(repr(value).encode())


def _all_finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, Mapping):
        return all(_all_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(_all_finite(item) for item in value)
    return not isinstance(value, float) or math.isfinite(value)
