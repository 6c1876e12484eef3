"""Progress lines of long work: what they say (count, share, rate, ETA) and how often."""

from __future__ import annotations

import pytest

from modelyard._progress import Progress, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (44.6, "45s"),
        (59.4, "59s"),
        (60, "1m00s"),
        (211, "3m31s"),
        (3600, "1h00m"),
        (7530, "2h05m"),
        (-3, "0s"),
    ],
)
def test_durations_read_short(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_a_line_gives_count_share_rate_and_eta() -> None:
    clock, lines = Clock(), []
    bar = Progress(800, desc="epoch 1/3", write=lines.append, clock=clock)
    bar.start()
    clock.now += 37.5
    bar.advance(120)
    # 120 steps in 37.5 s: 3.2 step/s; 680 left: 212.5 s.
    assert lines == ["epoch 1/3 step 120/800 (15%) 3.2 step/s ETA 3m32s"]


def test_the_last_line_says_how_long_it_took() -> None:
    clock, lines = Clock(), []
    with Progress(10, unit="batch", write=lines.append, clock=clock) as bar:
        for _ in range(10):
            clock.now += 0.5
            bar.advance(note="loss 0.2500")
    assert lines[-1] == "batch 10/10 (100%) 2.0 batch/s done in 5s loss 0.2500"


def test_lines_are_throttled_to_one_a_second_plus_first_and_last() -> None:
    clock, lines = Clock(), []
    with Progress(1000, write=lines.append, clock=clock, every_s=1.0) as bar:
        for _ in range(1000):
            clock.now += 0.01  # 100 steps a second for 10 s
            bar.advance()
    counts = [int(line.split()[1].split("/")[0]) for line in lines]
    assert counts[0] == 1 and counts[-1] == 1000
    assert 10 <= len(lines) <= 12  # the first, one per second, the last; not 1000
    assert counts == sorted(set(counts))  # never the same line twice


def test_slow_steps_read_in_seconds_per_step_and_unknown_totals_in_elapsed_time() -> None:
    clock, lines = Clock(), []
    bar = Progress(None, unit="row", desc="scanning", write=lines.append, clock=clock)
    bar.start()
    clock.now += 8
    bar.advance(2)
    assert lines == ["scanning row 2 4.0 s/row 8s elapsed"]


def test_closing_early_writes_where_it_stopped_and_nothing_when_nothing_started() -> None:
    clock, lines = Clock(), []
    Progress(5, write=lines.append, clock=clock).close()
    assert lines == []
    bar = Progress(5, write=lines.append, clock=clock)
    bar.advance()
    clock.now += 0.1
    bar.advance()  # within the second: held back
    bar.close()  # ... but the last line tells where it stopped
    assert [line.split()[1] for line in lines] == ["1/5", "2/5"]
