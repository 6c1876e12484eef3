"""The executor seam: the same checks on the local worker processes and on Ray.

Ray runs once for the whole session (the ``ray_executor`` fixture in conftest.py);
without Ray the Ray cases skip locally and fail under CI=true.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelyard
from cli_support import run_cli
from modelyard.backends.executors import Executor, open_executor
from modelyard.backends.executors.local import LocalExecutor
from modelyard.errors import ConfigError, SchemaValidationError, TaskError


@pytest.fixture(scope="module")
def local_executor() -> Iterator[LocalExecutor]:
    """Two warm workers for the module: starting one costs a Python start and imports."""
    local = LocalExecutor(max_workers=2)
    try:
        yield local
    finally:
        local.close()


@pytest.fixture(params=["local", "ray"])
def executor(request: pytest.FixtureRequest) -> Executor:
    fixture = "ray_executor" if request.param == "ray" else "local_executor"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


def slow_square(x: int) -> int:
    time.sleep(0.05 * (5 - x))  # the first items finish last
    return x * x


def fail_on(x: str) -> str:
    if x == "b":
        raise ValueError(f"bad item {x}")
    if x == "c":  # an exception that does not unpickle: its text must still come back
        raise SchemaValidationError([], what="item c")
    return x.upper()


def test_results_come_back_in_the_order_of_the_items(executor: Executor) -> None:
    results = executor.map(slow_square, [0, 1, 2, 3, 4])

    assert [r.get() for r in results] == [0, 1, 4, 9, 16]
    assert executor.slots() >= 2


def test_a_failed_task_is_an_error_naming_it_and_the_others_still_finish(
    executor: Executor,
) -> None:
    a, b, c, d = executor.map(fail_on, ["a", "b", "c", "d"], names=["A", "B", "C", "D"])

    assert (a.get(), d.get()) == ("A", "D")
    assert b.error is not None and b.error.task == "B"
    assert str(b.error) == "task 'B' failed: ValueError: bad item b"
    assert isinstance(b.error.__cause__, ValueError)
    assert "in fail_on" in b.error.traceback
    with pytest.raises(TaskError, match="task 'B' failed"):
        b.get()
    assert c.error is not None and "task 'C' failed: SchemaValidationError" in str(c.error)


def test_closures_and_functions_of_a_workspace_module_run(
    executor: Executor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module in a workspace folder (not installed): workers import it from there.
    name = f"pipelines_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "import os\nOFFSET = 100\n\n"
        "class Scored:\n    def __init__(self, value, pid):\n"
        "        self.value, self.pid = value, pid\n\n"
        "def score(x):\n    return Scored(x + OFFSET, os.getpid())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    factor = 3

    scored = [r.get() for r in executor.map(module.score, [1, 2])]
    closed_over = [r.get() for r in executor.map(lambda x: x * factor, [1, 2])]

    assert [s.value for s in scored] == [101, 102]
    assert isinstance(scored[0], module.Scored)
    assert os.getpid() not in {s.pid for s in scored}  # it ran in a worker, not here
    assert closed_over == [3, 6]


def test_a_task_past_the_time_limit_is_stopped_and_the_executor_goes_on(
    executor: Executor,
) -> None:
    start = time.monotonic()
    # The limit holds for the whole map, worker starts included: keep it above those.
    fast, slow = executor.map(time.sleep, [0, 60], names=["fast", "slow"], timeout_s=10)

    assert fast.error is None
    assert slow.error is not None and slow.error.timed_out
    assert str(slow.error) == "task 'slow' timed out: stopped after 10 s"
    assert time.monotonic() - start < 40
    assert [r.get() for r in executor.map(abs, [-1, -2])] == [1, 2]


def test_closing_the_results_stops_the_tasks_still_running(
    executor: Executor, tmp_path: Path
) -> None:
    def mark_after(seconds: float) -> str:
        # Short sleeps: Ray stops a task between Python steps, never inside a long sleep.
        for _ in range(int(seconds * 10)):
            time.sleep(0.1)
        (tmp_path / f"done-{seconds}").touch()
        return "done"

    results = executor.map(mark_after, [0.0, 20.0, 20.5])
    assert next(results).get() == "done"
    start = time.monotonic()

    results.close()

    assert time.monotonic() - start < 15
    time.sleep(1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done-0.0"]


def test_close_stops_what_the_executor_started_and_it_can_open_again(
    executor: Executor,
) -> None:
    own = open_executor(executor.url)
    pids = {r.get() for r in own.map(lambda _: os.getpid(), [0, 1, 2, 3])}

    own.close()

    if isinstance(own, LocalExecutor):
        assert all(not _alive(pid) for pid in pids)  # its worker processes are gone
    else:
        import ray

        assert ray.is_initialized()  # Ray was running before: it is not this executor's
    assert [r.get() for r in own.map(abs, [-5])] == [5]
    own.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("url", ["spark", "local://4", "ray://", "dask://host:8786"])
def test_an_unknown_executor_lists_the_valid_ones(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_executor(url)

    assert str(info.value) == (
        f"executor {url!r} is not known; use one of: local, ray, ray://HOST:PORT"
    )


def test_the_setting_picks_the_executor_and_a_bad_one_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ws"
    modelyard.Workspace.init(root).close()
    with modelyard.Workspace(root, environ={"MODELYARD_EXECUTOR_URL": "ray"}) as ws:
        assert ws.executor.url == "ray"
    with modelyard.Workspace(root, environ={}) as ws:
        assert isinstance(ws.executor, LocalExecutor)

    monkeypatch.setenv("MODELYARD_EXECUTOR_URL", "spark")
    args = ("-i", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet"))
    code, _, err = run_cli(capsys, "score", "m@production", *args, "-w", str(root))

    assert code == 2
    assert err.strip().splitlines() == [
        "error: executor 'spark' is not known; use one of: local, ray, ray://HOST:PORT "
        "(from executor.url, env MODELYARD_EXECUTOR_URL)"
    ]
    code, _, err = run_cli(
        capsys, "score", "m@production", *args, "--executor", "dask://x", "-w", str(root)
    )
    assert code == 2
    assert err.strip().splitlines() == [
        "error: executor 'dask://x' is not known; use one of: local, ray, ray://HOST:PORT"
    ]


def test_without_ray_the_ray_executor_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # makes 'import ray' fail
    executor = open_executor("ray")  # building it imports nothing

    with pytest.raises(ConfigError, match=r"pip install 'modelyard\[ray\]'"):
        executor.open()


def test_a_worker_whose_parent_was_killed_stops_its_task(tmp_path: Path) -> None:
    # `kill -9` of `modelyard jobs run` (or of a scheduler) left its worker running the
    # job to the end: nobody could record the outcome, and a retry or the next
    # scheduler ran the same slot beside it.
    ticks = tmp_path / "ticks"
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from modelyard.backends.executors.local import LocalExecutor\n"
        "def tick(path):\n"
        "    for _ in range(600):\n"
        "        with open(path, 'a') as f:\n"
        "            f.write(f'{os.getpid()}\\n')\n"
        "        time.sleep(0.1)\n"
        "for result in LocalExecutor(max_workers=1).map(tick, [sys.argv[1]]):\n"
        "    result.get()\n"
    )
    parent = subprocess.Popen([sys.executable, str(driver), str(ticks)], env=_src_env())
    try:
        deadline = time.monotonic() + 120
        while not (ticks.exists() and ticks.read_text().strip()):
            assert time.monotonic() < deadline, "the worker never started its task"
            assert parent.poll() is None, "the driver ended early"
            time.sleep(0.2)
    finally:
        parent.kill()
        parent.wait()
    worker_pid = int(ticks.read_text().split()[0])

    deadline = time.monotonic() + 10
    while _alive(worker_pid):
        assert time.monotonic() < deadline, "the orphaned worker is still running its task"
        time.sleep(0.2)
    written = ticks.read_text()
    time.sleep(0.5)
    assert ticks.read_text() == written


def _src_env() -> dict[str, str]:
    # The driver imports the modelyard these tests run against.
    src = str(Path(modelyard.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (ended, not yet reaped by init) counts as ended.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
