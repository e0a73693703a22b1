"""Errors a user can cause. Each carries a one-line message and the documented exit code.

The CLI prints ``clbp-bidsapp: error: <message>`` and exits with :attr:`UserError.exit_code`, without a
traceback. Exit codes are documented in docs/usage.md and in ``clbp-bidsapp --help``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from enum import IntEnum
from typing import Any, TypeVar

T = TypeVar("T")


class ExitCode(IntEnum):
    OK = 0
    SOME_FAILED = 1
    USAGE = 2
    NOTHING_PROCESSED = 3
    OUTPUT_NOT_WRITABLE = 4
    REPORT_FAILED = 5  # every result was written; a late step (report, methods text, manifest) failed
    INTERRUPTED = 130


class UserError(Exception):
    """An error in the user's arguments or data; ``str(error)`` is the whole message."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(UserError):
    """The input dataset cannot be used as it is (names the file and what to do)."""


class OutputError(UserError):
    """The output folder cannot be written."""

    exit_code = ExitCode.OUTPUT_NOT_WRITABLE


class ParticipantError(UserError):
    """One participant's data cannot be processed; the others go on."""

    def __init__(self, participant: str, message: str) -> None:
        super().__init__(f"sub-{participant}: {message}")
        self.participant = participant


class LateSteps:
    """Steps that run after the results are written (reports, methods text, manifest, summaries).

    A failure there must not lose a run: :meth:`run` reports it on one line (which step, why), the later steps
    still run, and :meth:`exit_code` turns a successful run's code into :attr:`ExitCode.REPORT_FAILED`.
    ``-vv`` logs the traceback.
    """

    def __init__(self, results: str) -> None:
        self.results = results  # where the (valid) results are, for the message
        self.failed: list[str] = []

    def run(self, step: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # any failure of a late step is reported; the results are kept
            logging.getLogger("clbp_bidsapp").debug("late step %s failed", step, exc_info=True)
            self.failed.append(step)
            reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            print(
                f"clbp-bidsapp: error: {step} failed after the results were written ({reason}); the results in "
                f"{self.results} are kept and valid; rerun with -vv for details",
                file=sys.stderr,
            )
            return None

    def exit_code(self, code: ExitCode) -> ExitCode:
        """``code``, or REPORT_FAILED when the run succeeded but a late step failed."""
        return ExitCode.REPORT_FAILED if self.failed and code == ExitCode.OK else code
