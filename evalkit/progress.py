"""Progress bars: tqdm updating in place on a terminal; elsewhere (a log file, CI) a whole line each tenth of the way,
not hundreds of carriage-return updates."""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator

from tqdm import tqdm

from evalkit.runlog import terminal


class Lines:
    """Progress as whole lines on stderr, one each tenth of the way."""

    def __init__(self, iterable: Iterable[Any] | None, total: int | None, unit: str, desc: str | None) -> None:
        self.iterable = iterable
        self.total = len(iterable) if total is None else total  # type: ignore[arg-type]
        self.unit, self.desc = unit, desc or "progress"
        self.done = self.tenths = 0
        self.started = time.perf_counter()

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update()

    def update(self, n: int = 1) -> None:
        self.done += n
        tenths = self.done * 10 // self.total if self.total else 10
        if tenths > self.tenths:
            self.tenths = tenths
            seconds = time.perf_counter() - self.started
            print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({self.done * 100 // max(self.total, 1)} %, "
                  f"{seconds:.0f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Nothing to clear: every line is whole (tqdm's interface)."""


def bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, unit: str = "img",
        desc: str | None = None, disable: bool = False) -> tqdm | Lines:
    """A progress bar over ``iterable`` (or ``total`` steps of ``update``), as the stderr it goes to can show it."""
    if disable or sys.stderr.isatty():
        return tqdm(iterable, total=total, unit=unit, desc=desc, disable=disable, dynamic_ncols=True,
                    file=terminal(sys.stderr))
    return Lines(iterable, total, unit, desc)
