"""A graceful stop on Ctrl-C and SIGTERM (``docker stop``, Kubernetes, ``timeout``).

A signal raised as ``KeyboardInterrupt`` lands wherever the interpreter happens to be,
inside a database commit or a connection pool's lock among them, and can leave the study
locked or the process hung. Within :func:`graceful_stop` the first SIGINT or SIGTERM only
records the request; the trial lifecycle reads it between training segments
(:func:`raise_if_requested`, every ~100 steps), checkpoints the trial and raises
:class:`StopRequested` there, at a point where nothing is half-written. Optuna marks the
trial FAIL, and ``grokforecast resume`` continues it from that checkpoint. The same
signal a second time stops at once, as users expect of a program that is slow to stop.

Worker processes die with their parent: on Linux, a worker asks the kernel for SIGTERM when
the parent is gone (:func:`stop_with_parent`), so a killed sweep leaves no orphan training.
The kernel sends that signal again each time the orphan passes from one exiting thread
of the parent to the next, while the parent's process id still stands, so in a worker a
repeated SIGTERM is the same death, not a second request: it never stops the worker at
once, which would leave its trial RUNNING in the middle of Optuna's record of it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: The signals that ask a sweep to stop, and the exit status a shell expects after each.
STOP_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: Seconds a worker has to checkpoint and mark its trials after the stop request.
STOP_GRACE_SECONDS = 30.0

_PR_SET_PDEATHSIG = 1

_requested: signal.Signals | None = None
_depth = 0
#: The parent a worker asked to die with (:func:`stop_with_parent`), if any.
_parent_pid: int | None = None


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived; raised between training segments, after a checkpoint.

    A ``KeyboardInterrupt``, so that Optuna marks the running trial FAIL (and re-raises)
    exactly as it does on Ctrl-C.
    """

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(signum.name)
        self.signum = signum


def requested() -> signal.Signals | None:
    """The stop signal received within :func:`graceful_stop`, if any."""
    return _requested


def request_stop(signum: signal.Signals | None) -> None:
    """Ask this process's trials to stop at their next segment end, as a stop signal within
    :func:`graceful_stop` does; for a host that learns of the stop otherwise (Ray Tune
    stopping a population). ``None`` withdraws the request."""
    global _requested
    _requested = signum


def raise_if_requested() -> None:
    """Raise :class:`StopRequested` if a stop signal has arrived."""
    if _requested is not None:
        raise StopRequested(_requested)


def exit_status(signum: signal.Signals | None) -> int:
    """The exit status for a sweep stopped by ``signum`` (130, as after Ctrl-C, if unknown)."""
    return STOP_SIGNALS.get(signum, 130) if signum is not None else 130


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _requested
    if _requested is None:
        _requested = signal.Signals(signum)
    elif signum == _requested and not _parent_death(signum):  # Ctrl-C twice, kill twice: stop now
        raise KeyboardInterrupt
    # Another signal after the first (a worker's SIGTERM from its parent after the
    # terminal's Ctrl-C reached them both), or the parent's death signal again, is the
    # same request: the stop goes on.


@contextmanager
def graceful_stop() -> Iterator[None]:
    """Within this block, SIGINT and SIGTERM request a stop instead of interrupting.

    Blocks nest (a sweep's worker runs within the sweep's); the outermost one installs the
    handlers and restores those in place before when it ends. Outside the main thread,
    where Python cannot set signal handlers, it changes nothing.
    """
    global _requested, _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} if _depth == 0 else {}
    for signum in before:
        signal.signal(signum, _on_signal)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for signum, handler in before.items():
            signal.signal(signum, handler)
        if _depth == 0:
            _requested = None


def _parent_death(signum: int) -> bool:
    """Whether ``signum`` may be a worker's parent-death signal (:func:`stop_with_parent`):
    SIGTERM in a worker. The kernel sends it again as each of the dying parent's threads
    exits, before the worker's parent id changes, so a worker's repeated SIGTERM is never a
    second request (stop a stuck worker with SIGKILL)."""
    return _parent_pid is not None and signum == signal.SIGTERM


def stop_with_parent(parent_pid: int) -> None:
    """Ask for SIGTERM when the parent process ends (Linux); stop at once if it already has."""
    global _parent_pid
    _parent_pid = parent_pid
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)
