"""Progress reporting: a redrawn bar on a terminal, plain lines every tenth otherwise (fake clock, exact text)."""

from __future__ import annotations

import io

import pytest

from clbp_bidsapp.io.progress import Progress, progress


class FakeClock:
    """Each call advances time by ``step`` seconds."""

    def __init__(self, step: float = 1.0):
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_stream_gets_a_line_per_tenth_and_a_closing_line():
    stream = io.StringIO()
    clock = FakeClock(1.0)  # start = 0; every later clock read is one second later
    items = list(progress(range(20), label="perm", stream=stream, clock=clock))
    assert items == list(range(20))
    lines = stream.getvalue().splitlines()
    # 20 items: a line every 2 items (10%, 20%, ... 90%), then the closing line (not a 100% line as well)
    assert len(lines) == 10
    assert lines[0] == "perm: 2/20 (10%) after 1.0 s, about 9.0 s left"
    assert lines[1] == "perm: 4/20 (20%) after 2.0 s, about 8.0 s left"
    assert lines[8].startswith("perm: 18/20 (90%) after 9.0 s")
    assert lines[-1] == "perm: 20/20 done in 10.0 s"
    assert "\r" not in stream.getvalue()


def test_plain_stream_with_few_items_announces_each_tenth_once():
    stream = io.StringIO()
    bar = progress(3, label="ica", stream=stream, clock=FakeClock(0.5))
    with bar:
        bar.update()  # 33%: crosses 10, 20, 30 -> one line
        bar.update(2)  # 100%: left to the closing line
    lines = stream.getvalue().splitlines()
    assert lines == ["ica: 1/3 (33%) after 0.5 s, about 1.0 s left", "ica: 3/3 done in 1.0 s"]


def test_plain_stream_reports_a_loop_left_early():
    stream = io.StringIO()
    with pytest.raises(RuntimeError):
        for i in progress(range(10), label="graph", stream=stream, clock=FakeClock(1.0)):
            if i == 3:
                raise RuntimeError("boom")
    assert stream.getvalue().splitlines()[-1] == "graph: 3/10 stopped in 4.0 s"


def test_terminal_gets_one_redrawn_line_with_rate_and_eta():
    stream = Terminal()
    for _ in progress(range(4), label="tfce", stream=stream, clock=FakeClock(1.0), min_interval=0):
        pass
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1, "a single line, ended once"
    frames = text.rstrip("\n").split("\r")[1:]
    assert frames[0] == "tfce |######------------------| 1/4  25% 1.0/s ETA 0:03"
    assert frames[1] == "tfce |############------------| 2/4  50% 1.0/s ETA 0:02"
    assert frames[-1] == "tfce |########################| 4/4 100% 0.8/s in 0:05"


def test_terminal_redraws_at_most_every_min_interval_but_always_at_the_end():
    stream = Terminal()
    clock = FakeClock(0.01)
    for _ in progress(range(100), label="x", stream=stream, clock=clock, min_interval=0.1):
        pass
    frames = stream.getvalue().rstrip("\n").split("\r")[1:]
    assert 5 <= len(frames) <= 15  # about 1 s of fake time at 0.1 s per redraw, not 100 redraws
    assert frames[-1].startswith("x |########################| 100/100 100%")


def test_shorter_frame_erases_the_longer_one_before_it():
    stream = Terminal()
    bar = Progress(None, label="walk", stream=stream, clock=FakeClock(1.0), min_interval=0)
    bar.update(123456)
    bar.update(-123455)  # a shorter count: the frame is padded to the previous width
    bar.close()
    frames = stream.getvalue().rstrip("\n").split("\r")[1:]
    assert len(frames[1]) >= len(frames[0].rstrip())


def test_unknown_total_plain_stream_reports_only_the_end():
    stream = io.StringIO()
    consumed = list(progress((i for i in range(7)), label="gen", stream=stream, clock=FakeClock(2.0)))
    assert consumed == list(range(7))
    assert stream.getvalue() == "gen: 7 done in 2.0 s\n"


def test_total_argument_gives_a_generator_its_length():
    stream = io.StringIO()
    list(progress((i for i in range(10)), label="gen", total=10, stream=stream, clock=FakeClock(1.0)))
    assert stream.getvalue().splitlines()[0].startswith("gen: 1/10 (10%)")


def test_close_is_idempotent_and_updates_after_close_are_ignored():
    stream = io.StringIO()
    bar = progress(2, label="y", stream=stream, clock=FakeClock(1.0))
    bar.update(2)
    bar.close()
    bar.close()
    bar.update(5)
    assert stream.getvalue().count("done") == 1 and bar.done == 2


def test_default_stream_is_stderr_at_call_time(capsys):
    for _ in progress(range(10), label="default", clock=FakeClock(1.0)):
        pass
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == "default: 10/10 done in 10.0 s"


def test_tty_argument_overrides_the_stream():
    terminal, plain = Terminal(), io.StringIO()
    for _ in progress(range(10), label="a", stream=terminal, clock=FakeClock(1.0), tty=False):
        pass
    for _ in progress(range(10), label="b", stream=plain, clock=FakeClock(1.0), tty=True, min_interval=0):
        pass
    assert "\r" not in terminal.getvalue() and terminal.getvalue().splitlines()[-1] == "a: 10/10 done in 10.0 s"
    assert plain.getvalue().count("\r") == 11 and plain.getvalue().endswith("\n")


def test_plain_stream_stays_quiet_for_short_work():
    quick = io.StringIO()
    list(progress(range(20), label="short", stream=quick, clock=FakeClock(0.1), quiet_below=10))
    assert quick.getvalue() == ""  # 2 s of work: no line at all
    slow = io.StringIO()
    list(progress(range(20), label="long", stream=slow, clock=FakeClock(1.0), quiet_below=5))
    lines = slow.getvalue().splitlines()
    assert lines[0].startswith("long: 10/20 (50%) after 5.0 s")  # first tenth reached after 5 s of work
    assert lines[-1] == "long: 20/20 done in 10.0 s"
