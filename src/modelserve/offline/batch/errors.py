"""The two ways a batch job stops: it cannot start as asked, or it ran and failed."""

from __future__ import annotations

from typing import Any

__all__ = ["BatchError", "JobFailed"]


class BatchError(Exception):
    """The job cannot run as asked (bad option, unreadable input, a folder holding another
    job's output): one line for the user, nothing was written."""


class JobFailed(BatchError):
    """The job ran and failed: too many bad rows, or shards that could not be processed. What
    finished stays in the output folder; a rerun resumes from there. ``summary`` is the job's
    JobSummary."""

    def __init__(self, message: str, summary: Any = None) -> None:
        super().__init__(message)
        self.summary = summary
