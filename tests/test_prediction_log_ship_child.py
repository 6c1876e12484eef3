"""The prediction log's shipping process: a store error raised there is the caller's to
retry (the process keeps shipping), and a stop signal sent to the whole process group is
the server's to act on, not the child's."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.backends.predictions._ship import ChildProcess


@pytest.fixture
def child() -> Iterator[ChildProcess]:
    shipper = ChildProcess()
    shipper.start()
    yield shipper
    shipper.close()


def test_an_error_of_the_shipping_work_does_not_move_shipping_into_the_server(
    child: ChildProcess, tmp_path: Path
) -> None:
    pid = child.run(os.getpid)
    assert pid != os.getpid()
    with pytest.raises(FileNotFoundError):  # a store that is down, as the child saw it
        child.run(os.stat, str(tmp_path / "missing"))
    assert child.run(os.getpid) == pid  # still the child's work


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_a_stop_for_the_process_group_leaves_the_child_to_the_server(
    child: ChildProcess, sig: signal.Signals
) -> None:
    pid = child.run(os.getpid)
    os.kill(pid, sig)  # what the child gets when the group is signalled
    time.sleep(0.2)
    assert child.run(os.getpid) == pid  # not broken: the server ends it when it stops
