"""Progress of long stages: a one-line bar on a terminal, plain lines (every ~10 %) in logs and batch jobs.

No dependency: a terminal gets ``label |#######-----|  45/100  45%  12.3/s  ETA 0:05`` redrawn in place (at most
every ``min_interval`` seconds); any other stream (a file, a pipe, SLURM's log) gets a line each time another
tenth of the work is done and a closing line with the elapsed time::

    group permutations: 10/100 (10%) after 1.2 s, about 10.8 s left
    ...
    group permutations: 100/100 done in 12.0 s

Use it around a loop, or update it by hand (e.g. from a callback a kernel in ``core`` calls per block)::

    for block in progress(blocks, label="alff permutations"):
        ...
    with progress(n_permutations, label="alff permutations") as bar:
        kernel(..., on_progress=bar.update)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = max(round(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts done items of a known (or unknown) total and reports them to ``stream``.

    Parameters
    ----------
    total : int or None
        Number of items; ``None`` when unknown (then only counts and rates are shown).
    label : str
        What is being done, at the start of every line.
    stream : text stream, optional
        Where to write (default: ``sys.stderr`` at the time of the call). A bar is drawn when
        ``stream.isatty()``; otherwise plain lines.
    clock : callable, optional
        Seconds as a float (default ``time.monotonic``); tests pass a fake clock.
    min_interval : float
        Shortest time between two redraws of the terminal bar.
    tty : bool, optional
        Force the bar (``True``) or plain lines (``False``) instead of asking ``stream.isatty()``; e.g. plain
        lines inside nipype nodes, whose parallel workers share the terminal.
    quiet_below : float
        Plain mode only: write nothing until the work has taken this many seconds, so that a log is not filled
        with the lines of many short tasks (0 = always report).
    """

    def __init__(
        self,
        total: int | None,
        *,
        label: str,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 0.1,
        tty: bool | None = None,
        quiet_below: float = 0.0,
    ) -> None:
        self.quiet_below = quiet_below
        self.total = None if total is None else max(int(total), 0)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.min_interval = min_interval
        self.done = 0
        self.closed = False
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty()) if tty is None else tty
        self._start = clock()
        self._last_draw = -float("inf")
        self._next_tenth = 1  # plain mode: the next tenth of the total to announce
        self._drawn_width = 0

    # -- counting -------------------------------------------------------------------------------------------
    def update(self, n: int = 1) -> None:
        """Record ``n`` more items done."""
        if self.closed:
            return
        self.done += n
        if self.tty:
            now = self.clock()
            if now - self._last_draw >= self.min_interval or (self.total is not None and self.done >= self.total):
                self._draw(now)
        else:
            self._plain_lines()

    def close(self) -> None:
        """Finish: the final bar (terminal) or the closing line (plain). Called once; later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        elapsed = self.clock() - self._start
        if self.tty:
            self._draw(self._start + elapsed)
            self.stream.write("\n")
            self.stream.flush()
        elif elapsed >= self.quiet_below:
            total = "" if self.total is None else f"/{self.total}"
            word = "done" if self.total is None or self.done >= self.total else "stopped"
            self.stream.write(f"{self.label}: {self.done}{total} {word} in {elapsed:.1f} s\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- rendering ------------------------------------------------------------------------------------------
    def _rate(self, elapsed: float) -> float | None:
        return self.done / elapsed if elapsed > 0 and self.done else None

    def _draw(self, now: float) -> None:
        self._last_draw = now
        elapsed = now - self._start
        rate = self._rate(elapsed)
        rate_text = f"{rate:.1f}/s" if rate is not None else "?/s"
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * BAR_WIDTH)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            width = len(str(self.total))
            if self.done >= self.total:
                eta = f"in {_duration(elapsed)}"
            else:
                eta = f"ETA {_duration((self.total - self.done) / rate)}" if rate else "ETA ?"
            text = f"{self.label} |{bar}| {self.done:>{width}}/{self.total} {fraction:4.0%} {rate_text} {eta}"
        else:
            text = f"{self.label}: {self.done} {rate_text} {_duration(elapsed)}"
        padding = " " * max(self._drawn_width - len(text), 0)  # erase what a longer earlier line left
        self._drawn_width = len(text)
        self.stream.write(f"\r{text}{padding}")
        self.stream.flush()

    def _plain_lines(self) -> None:
        if not self.total or self.done >= self.total:  # the closing line reports the end
            return
        crossed = None
        while self._next_tenth <= 9 and self.done * 10 >= self._next_tenth * self.total:
            crossed = self._next_tenth
            self._next_tenth += 1
        if crossed is None:
            return
        elapsed = self.clock() - self._start
        if elapsed < self.quiet_below:
            return
        rate = self._rate(elapsed)
        left = f", about {(self.total - self.done) / rate:.1f} s left" if rate else ""
        percent = int(100 * self.done / self.total)
        self.stream.write(f"{self.label}: {self.done}/{self.total} ({percent}%) after {elapsed:.1f} s{left}\n")
        self.stream.flush()


def progress(
    iterable_or_total: Iterable[Any] | int,
    *,
    label: str,
    stream: IO[str] | None = None,
    total: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    min_interval: float = 0.1,
    tty: bool | None = None,
    quiet_below: float = 0.0,
) -> Any:
    """Report progress over an iterable (yielding its items) or a count of items updated by hand.

    ``progress(items, label=...)`` is an iterator over ``items`` that counts one per item and reports when the
    loop ends (also when it is left early or raises). ``progress(n, label=...)`` returns a :class:`Progress`
    (a context manager) for ``bar.update(k)`` calls. ``total`` overrides ``len(iterable)`` (or gives it for
    generators); see :class:`Progress` for the other arguments.
    """
    options = {"label": label, "stream": stream, "clock": clock, "min_interval": min_interval, "tty": tty,
               "quiet_below": quiet_below}  # fmt: skip
    if isinstance(iterable_or_total, int):
        return Progress(iterable_or_total, **options)
    if total is None:
        try:
            total = len(iterable_or_total)  # type: ignore[arg-type]
        except TypeError:
            total = None
    bar = Progress(total, **options)
    return _iterate(iterable_or_total, bar)


def _iterate(items: Iterable[Any], bar: Progress) -> Iterator[Any]:
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()
