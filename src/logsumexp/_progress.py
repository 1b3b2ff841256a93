"""A tiny one-line progress bar for stderr, with no dependency.

It draws only when its stream is a terminal (or when forced with ``enabled=True``), redraws at most
every ``min_interval`` seconds, and erases itself when closed, so that the result printed on stdout
is left alone on the screen. With an unknown total (a pipe) it shows the amount done and the rate.

>>> import io
>>> buf = io.StringIO()
>>> bar = ProgressBar(1 << 20, label="x.npy", stream=buf, enabled=True, min_interval=0, width=60)
>>> bar.update(1 << 19)
>>> buf.getvalue().split("\\r")[-1].rstrip()
'x.npy [################---------------]  50%    0.5/1.0 MiB'
>>> bar.close()
>>> format_bytes(3 * 2**30)
'3.0 GiB'
"""

from __future__ import annotations

import shutil
import sys
import time
from types import TracebackType
from typing import TextIO

__all__ = ["ProgressBar", "format_bytes"]


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units with one decimal (``'1.5 MiB'``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or not a real file
        return False


class ProgressBar:
    """Progress of a long read, drawn on one line of ``stream`` (stderr by default).

    Parameters
    ----------
    total : float or None
        The amount of work in bytes (None when unknown, e.g. reading a pipe).
    label : str
        What is being processed (a file name); shortened to fit.
    stream : text stream, optional
        Where to draw (default: ``sys.stderr`` at construction time).
    enabled : bool or None
        Draw or not; None (default) draws only when ``stream`` is a terminal.
    min_interval : float
        Least seconds between two redraws.
    width : int or None
        Line width (default: the terminal's, at most 100 columns).
    """

    def __init__(
        self,
        total: float | None,
        *,
        label: str = "",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval: float = 0.1,
        width: int | None = None,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = _is_tty(self.stream) if enabled is None else enabled
        self.total = total if total is None or total > 0 else None
        self.label = label
        self.done = 0.0
        self.min_interval = min_interval
        self.width = width if width is not None else min(100, shutil.get_terminal_size((80, 24)).columns)
        self._start = time.perf_counter()
        self._last_draw = -float("inf")
        self._drawn = False

    def update(self, n: float) -> None:
        """Record ``n`` more bytes done; redraw if enough time has passed."""
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last_draw >= self.min_interval:
            self._last_draw = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        """The bar's current text (without the carriage return), at most ``width - 1`` columns."""
        elapsed = (time.perf_counter() if now is None else now) - self._start
        if self.total is None:
            rate = f"  {format_bytes(self.done / elapsed)}/s" if elapsed > 0.5 else ""
            return self._fit(f"{self.label} {format_bytes(self.done)}  {elapsed:.1f} s{rate}")
        frac = min(1.0, self.done / self.total)
        unit, scale = ("GiB", 2**30) if self.total >= 2**30 else ("MiB", 2**20)
        amounts = f"{self.done / scale:5.1f}/{self.total / scale:.1f} {unit}"
        eta = ""
        if 0 < frac < 1 and elapsed > 1.0:
            eta = f"  ETA {elapsed * (1 - frac) / frac:.0f} s"
        tail = f" {100 * frac:3.0f}%  {amounts}{eta}"
        label = self._shorten(self.label, max(8, (self.width - 1) // 3))
        room = self.width - 1 - len(label) - len(tail) - 3
        if room < 10:  # a narrow terminal: no bar, just the numbers
            return self._fit(f"{label}{tail}")
        filled = round(room * frac)
        return f"{label} [{'#' * filled}{'-' * (room - filled)}]{tail}"

    def _fit(self, text: str) -> str:
        return text[: self.width - 1]

    @staticmethod
    def _shorten(text: str, n: int) -> str:
        return text if len(text) <= n else "..." + text[-(n - 3):]

    def _draw(self, now: float | None = None) -> None:
        text = self.line(now)
        try:
            self.stream.write("\r" + text.ljust(self.width - 1))
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing
            self.enabled = False
            return
        self._drawn = True

    def close(self) -> None:
        """Erase the bar's line (if anything was drawn) and stop drawing."""
        if self.enabled and self._drawn:
            try:
                self.stream.write("\r" + " " * (self.width - 1) + "\r")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self.enabled = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
