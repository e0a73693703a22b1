"""What the app tells its user on stderr: one path for every line, and the log handler that ``-v`` configures.

Summaries (runs found, each participant's outcome, the group level's results) are always shown, through
:func:`say`; errors through :func:`error`. Everything else is logged under the ``clbp_bidsapp`` logger, which
:func:`configure_logging` gives one handler with the same ``clbp-bidsapp:`` prefix: quiet by default (warnings
only), INFO with ``-v``, DEBUG (with the tracebacks the code logs for unexpected errors) with ``-vv``. nipype's
own log is set from the same verbosity by :mod:`clbp_bidsapp.workflows.execution`.

A package-level module (not ``cli/``) so that every layer may print through it.
"""

from __future__ import annotations

import logging
import sys

PROG = "clbp-bidsapp"
LOGGER_NAME = "clbp_bidsapp"


def say(message: str) -> None:
    """One line of the user-facing summary on stderr, shown at every verbosity."""
    print(f"{PROG}: {message}", file=sys.stderr)


def error(message: str) -> None:
    """Print one error line (no traceback) on stderr."""
    say(f"error: {message}")


def errors(messages: list[str]) -> None:
    for message in messages:
        error(message)


class _StderrHandler(logging.StreamHandler):
    """A handler writing to the *current* ``sys.stderr`` (which tests and wrappers may replace)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def configure_logging(verbosity: int) -> logging.Logger:
    """The ``clbp_bidsapp`` logger with one stderr handler: WARNING (0), INFO (-v) or DEBUG (-vv and more).

    Calling it again (another run in the same process) replaces the handler instead of adding a second one.
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    detail = "%(levelname)s %(name)s: " if level == logging.DEBUG else ""
    handler.setFormatter(logging.Formatter(f"{PROG}: {detail}%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger
