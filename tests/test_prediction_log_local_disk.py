"""On a local disk a request writes its own prediction-log line (no thread hand-off);
anywhere a write could hang, the writer thread does; rotation still follows age and size."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.backends.predictions._local_disk import is_local_file
from modelyard.backends.predictions._segments import SegmentWriter

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/mountinfo").exists(),
    reason="no /proc/self/mountinfo: every prediction-log write takes the writer thread",
)
on_a_loop = pytest.mark.anyio


def test_a_regular_file_here_is_local_and_a_pipe_or_device_is_not(tmp_path: Path) -> None:
    with open(tmp_path / "segment", "wb") as f:
        assert is_local_file(f.fileno())
    read_end, write_end = os.pipe()
    null = os.open("/dev/null", os.O_WRONLY)
    try:
        assert not is_local_file(write_end)  # a full pipe is how a hung disk is simulated
        assert not is_local_file(null)
    finally:
        for fd in (read_end, write_end, null):
            os.close(fd)
    assert not is_local_file(null)  # closed


def _record_writes(writer: SegmentWriter, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads of every os.write to ``writer``'s segment from here on."""
    seen: list[str] = []
    real, fd = os.write, writer._fd

    def write(to: int, data: bytes | memoryview) -> int:
        if to == fd:
            seen.append(threading.current_thread().name)
        return real(to, data)

    monkeypatch.setattr(os, "write", write)
    return seen


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[SegmentWriter]:
    writer = SegmentWriter(tmp_path / "spool")
    writer.start()
    yield writer
    writer.close()


def _lines(folder: Path) -> list[bytes]:
    return [
        line
        for path in sorted(folder.glob("seg-*"))
        for line in path.read_bytes().splitlines()
        if line
    ]


@on_a_loop
async def test_the_caller_writes_its_own_line_on_a_local_disk(
    spool: SegmentWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_writes(spool, monkeypatch)
    await spool.append(b'{"n": 1}\n')
    # Already in the file when append returns: the answer may leave now.
    assert _lines(spool.folder) == [b'{"n": 1}']
    assert seen == [threading.current_thread().name]


@on_a_loop
async def test_with_fsync_the_writer_thread_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = SegmentWriter(tmp_path / "spool", fsync_ms=1.0)
    writer.start()
    seen = _record_writes(writer, monkeypatch)
    try:
        await asyncio.gather(*(writer.append(b'{"n": %d}\n' % i) for i in range(3)))
        assert sorted(_lines(tmp_path / "spool")) == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
        assert set(seen) == {"modelyard-predlog"}
    finally:
        writer.close()


@on_a_loop
async def test_lines_the_caller_wrote_still_rotate_by_age_and_by_size(tmp_path: Path) -> None:
    aged = SegmentWriter(tmp_path / "aged", max_age_s=0.2)
    sized = SegmentWriter(tmp_path / "sized", segment_bytes=20)
    for writer in (aged, sized):
        writer.start()
    try:
        await aged.append(b'{"n": 1}\n')
        for i in range(3):
            await sized.append(b'{"n": %d}\n' % i)  # 9 bytes each: full after the third
        await asyncio.sleep(0.6)
        # The thread closed (renamed .done) the segments, and opened empty new ones.
        [done] = (tmp_path / "aged").glob("seg-*.done")
        assert done.read_bytes() == b'{"n": 1}\n'
        assert len(list((tmp_path / "sized").glob("seg-*.done"))) == 1
        assert len(_lines(tmp_path / "sized")) == 3
    finally:
        aged.close()
        sized.close()


@on_a_loop
async def test_a_busy_servers_lines_are_written_together_by_the_writer_thread(
    spool: SegmentWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_writes(spool, monkeypatch)
    # here=False: the server is busy (other requests in it), so group commit wins.
    await asyncio.gather(*(spool.append(b'{"n": %d}\n' % i, here=False) for i in range(5)))
    assert sorted(_lines(spool.folder)) == [b'{"n": %d}' % i for i in range(5)]
    assert seen == ["modelyard-predlog"]  # one write for the five
