"""The run's log (``results/<run>/log.txt``): everything said during a run, where the terminal shows evalkit's lines.

Libraries speak through logging (ONNX Runtime's quantizer, timm, huggingface_hub, OpenVINO), Python warnings,
and in a few calls plain prints, which the caller wraps in ``contract.library_output``. During a run their
records and warnings go to the log only; what evalkit prints goes to the terminal and to the log. The run folder
is written at once at the end (``record.write``), so the log lives in a temporary file until then.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, TextIO

#: how a library's record reads in the log
FORMAT = "%(levelname)s %(name)s: %(message)s"


class _Tee:
    """A stream that writes to the terminal's stream and to the log; everything else is the terminal's."""

    def __init__(self, terminal: TextIO, log: TextIO) -> None:
        self.terminal: TextIO = terminal
        self.log: TextIO | None = log

    def write(self, text: str) -> int:
        if self.log is not None:
            self.log.write(text)
        return self.terminal.write(text)

    def flush(self) -> None:
        if self.log is not None:
            self.log.flush()
        self.terminal.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.terminal, name)


def terminal(stream: TextIO) -> TextIO:
    """The terminal's own stream behind a run's tee (a progress bar's updates in place are not for the log)."""
    return stream.terminal if isinstance(stream, _Tee) else stream


class RunLog:
    """The temporary file a run's log is kept in."""

    def __init__(self) -> None:
        self.file: TextIO = tempfile.TemporaryFile("w+", prefix="evalkit-log-", suffix=".txt", encoding="utf-8")

    def text(self) -> str:
        """All that was said so far."""
        self.file.flush()
        self.file.seek(0)
        said = self.file.read()
        self.file.seek(0, os.SEEK_END)
        return said


def _terminal_handlers() -> dict[logging.Logger, list[logging.Handler]]:
    """Each library logger's own console handlers (huggingface_hub adds one to stderr): silenced during a run."""
    loggers = [lg for lg in list(logging.root.manager.loggerDict.values())
               if isinstance(lg, logging.Logger) and not lg.name.startswith("evalkit")]
    found = {lg: [h for h in lg.handlers if type(h) is logging.StreamHandler] for lg in loggers}
    return {lg: handlers for lg, handlers in found.items() if handlers}


@contextmanager
def capture() -> Iterator[RunLog]:
    """During the block: libraries' logging and Python warnings to the log only, evalkit's prints to both."""
    log = RunLog()
    root = logging.getLogger()
    saved_handlers, saved_level, shown = root.handlers[:], root.level, warnings.showwarning
    handler = logging.StreamHandler(log.file)
    handler.setFormatter(logging.Formatter(FORMAT))
    muted = _terminal_handlers()
    out, err = _Tee(sys.stdout, log.file), _Tee(sys.stderr, log.file)

    def to_log(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
               line: str | None = None) -> None:
        logging.getLogger("py.warnings").warning(warnings.formatwarning(message, category, filename, lineno, line)
                                                 .rstrip())

    root.handlers, warnings.showwarning = [handler], to_log
    root.setLevel(min(saved_level or logging.INFO, logging.INFO))
    for logger, handlers in muted.items():
        for h in handlers:
            logger.removeHandler(h)
    sys.stdout, sys.stderr = out, err
    try:
        yield log
    finally:
        sys.stdout, sys.stderr = out.terminal, err.terminal
        out.log = err.log = None  # a handler made during the run may hold the tee: it writes to the terminal only
        for logger, handlers in muted.items():
            for h in handlers:
                logger.addHandler(h)
        root.handlers, warnings.showwarning = saved_handlers, shown
        root.setLevel(saved_level)
        log.file.close()
