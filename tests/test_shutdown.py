"""A stop signal is recorded, raised between training segments, and the handlers restored."""

from __future__ import annotations

import os
import signal

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
