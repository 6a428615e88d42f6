"""Errors a user sees. Each says what was wrong, where, and what was expected."""

from __future__ import annotations


class TierwiseError(Exception):
    """Base class: a problem the user can fix; the CLI prints it without a traceback."""


class WorkspaceError(TierwiseError):
    """The workspace is missing, malformed or of an unsupported version."""


class MappingError(TierwiseError):
    """A column mapping names unknown columns or formats."""


class SourceError(TierwiseError):
    """A source file or query cannot be read at all (encoding, format, structure)."""


class ImportRejected(TierwiseError):
    """An import found bad rows and applied nothing.

    ``rejects`` holds the first rejected rows (file, row, column, value, reason); ``total``
    counts all of them; ``report_path`` is where the full CSV report was written, if anywhere.
    """

    def __init__(self, message: str, rejects: list[dict[str, object]], total: int,
                 report_path: str | None = None) -> None:
        super().__init__(message)
        self.rejects = rejects
        self.total = total
        self.report_path = report_path


class NotFoundError(TierwiseError):
    """A customer, segment, snapshot, user or key that does not exist."""


class ForbiddenError(TierwiseError):
    """The caller may not do this (their role lacks a permission the request needs)."""
