"""A stop signal is recorded, raised between training segments, and the handlers restored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grokforecast.sweep.shutdown import (
    StopRequested,
    exit_status,
    graceful_stop,
    raise_if_requested,
    requested,
)


def test_the_first_signal_is_recorded_and_raised_where_asked() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with graceful_stop():
        raise_if_requested()  # nothing yet
        os.kill(os.getpid(), signal.SIGTERM)
        assert requested() is signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)  # another signal: the same request, the stop goes on
        with pytest.raises(StopRequested) as stopped:
            raise_if_requested()
    assert stopped.value.signum is signal.SIGTERM and isinstance(stopped.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before and requested() is None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_same_signal_twice_interrupts_at_once(signum: signal.Signals) -> None:
    before = signal.getsignal(signal.SIGINT)
    with graceful_stop(), graceful_stop():  # nested, as a worker within a sweep
        os.kill(os.getpid(), signum)
        assert requested() is signum
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
    assert signal.getsignal(signal.SIGINT) is before


def test_exit_status_follows_the_shell_convention() -> None:
    assert (exit_status(signal.SIGINT), exit_status(signal.SIGTERM), exit_status(None)) == (130, 143, 130)


#: A worker that dies with its parent, and writes what it was asked once the parent is gone
#: and the death signal came again.
ORPHAN = """
import os, signal, sys, time
from pathlib import Path
from grokforecast.sweep import shutdown
parent = os.getppid()
shutdown.stop_with_parent(parent)
with shutdown.graceful_stop():
    print("ready", flush=True)
    while os.getppid() == parent:
        time.sleep(0.01)
    time.sleep(0.5)  # the kernel's parent-death SIGTERM
    os.kill(os.getpid(), signal.SIGTERM)  # and again, as when the next parent thread exits
    Path(sys.argv[1]).write_text(shutdown.requested().name)
"""
PARENT = """
import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
worker.stdout.readline()  # its handlers are in place: end, and leave it an orphan
"""


def test_a_worker_takes_its_parents_death_signal_again_as_the_same_request(tmp_path: Path) -> None:
    answer = tmp_path / "answer"
    subprocess.run([sys.executable, "-c", PARENT, ORPHAN, str(answer)], check=True, timeout=60)
    deadline = time.monotonic() + 30
    while not answer.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer.exists() and answer.read_text() == "SIGTERM"  # not stopped at once: it lived on


#: A worker whose parent still stands, sent SIGTERM twice (as the kernel does while the
#: parent's threads exit one by one): it writes what it was asked.
TWICE = """
import os, signal, sys
from pathlib import Path
from grokforecast.sweep import shutdown
shutdown.stop_with_parent(os.getppid())
with shutdown.graceful_stop():
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    Path(sys.argv[1]).write_text(shutdown.requested().name)
"""


def test_a_worker_takes_a_repeated_sigterm_as_the_same_request_while_its_parent_stands(
    tmp_path: Path,
) -> None:
    answer = tmp_path / "answer"
    command = [sys.executable, "-c", TWICE, str(answer)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # not stopped at once by a KeyboardInterrupt
    assert answer.read_text() == "SIGTERM"
