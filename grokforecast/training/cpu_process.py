"""Process settings that keep long training runs on the CPU fast and steady.

Two defaults of a Linux process cost a small model on the CPU more than grokforecast's
whole training loop does:

- Weights that weight decay drives towards zero become denormal floats, which x86 CPUs
  compute ~100x slower; flushing them to zero changes nothing measurable.
- glibc's allocator serves large blocks (one full-batch activation is megabytes) with
  ``mmap`` and trims its heap whenever the top is free, so each step's tensors fault
  their pages in afresh: hundreds of page faults per step, 5-10 % of a small model's
  step on a 2-core machine, and a different amount each minute. With higher thresholds,
  the memory freed by one step is reused by the next (the same effect as running under
  jemalloc or tcmalloc, which PyTorch's CPU tuning guide recommends).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

Result = TypeVar("Result")

# mallopt parameters (malloc.h) and the largest mmap threshold glibc accepts on 64-bit.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGEST_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.cache  # a process-wide setting: looking up the C library once is enough
def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _LARGEST_MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


def tune_for_training_on(device: torch.device) -> None:
    """On the CPU, flush denormal floats to zero and keep freed memory (see the module
    docstring); on another device, nothing."""
    if device.type == "cpu":
        torch.set_flush_denormal(True)
        keep_freed_memory()


def on_a_passing_thread(work: Callable[..., Result], *args: object) -> Result:
    """``work(*args)`` run on a thread that ends with it, its exceptions raised here.

    Torch's first parallel region on a thread starts an OpenMP team for that thread's
    life; once more threads keep teams than there are cores, OpenMP stops spinning between
    parallel regions and every small region waits for its threads to wake. Torch work
    done before training (checking a study's workload, timing population sizes) runs here,
    so that no team is left on the main thread to slow the threads that train later: a
    quickstart-sized population's sweep took 1.5x as long with one (BENCHMARKS.md).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="grokforecast-passing") as passing:
        return passing.submit(work, *args).result()
