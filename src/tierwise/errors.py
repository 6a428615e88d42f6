"""Errors a user sees. Each says what was wrong, where, and what was expected.

An error may carry its message in Chinese too (``zh=``); ``str(error)`` gives the language
being spoken where it is shown: ``speaking(lang)`` sets it for a request (the API and the
dashboard: the caller's language, else the workspace's locale) or a command (the CLI: the
workspace's locale, or ``$TIERWISE_LANG``). Elsewhere (the Python API, logs) English.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Self

#: None where nothing chose a language (an error then shows the message it was made with).
_SPEAKING: ContextVar[str | None] = ContextVar("tierwise_speaking", default=None)


@contextmanager
def speaking(lang: str) -> Iterator[None]:
    """Show errors (and other bilingual words) in ``lang`` ("zh-CN" or "en") meanwhile."""
    token = _SPEAKING.set(lang)
    try:
        yield
    finally:
        _SPEAKING.reset(token)


def spoken() -> str:
    """The language errors are shown in here and now (English unless chosen)."""
    return _SPEAKING.get() or "en"


def say(en: str, zh: str) -> str:
    """``en`` or ``zh``, whichever language is being spoken."""
    return zh if _SPEAKING.get() == "zh-CN" else en


class Said(str):
    """Words made in English and Chinese, shown (``str()``, f-strings) in the language being
    spoken where they are shown, not where they were made: a reason given on a worker
    thread reads in the caller's language in the report written later. The string's own
    value is the English (what code that compares or serialises it sees).

    >>> reason = Said("not a whole number", "不是整数")
    >>> with speaking("zh-CN"):
    ...     f"row 2: {reason}"
    'row 2: 不是整数'
    >>> f"row 2: {reason}"
    'row 2: not a whole number'
    """

    zh: str

    def __new__(cls, en: str, zh: str) -> Said:
        made = super().__new__(cls, en)
        made.zh = zh
        return made

    def __str__(self) -> str:
        return self.zh if _SPEAKING.get() == "zh-CN" else str.__str__(self)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __reduce__(self) -> tuple[type[Said], tuple[str, str]]:
        return Said, (str.__str__(self), self.zh)

    def both(self) -> tuple[str, str]:
        """(English, Chinese)."""
        return str.__str__(self), self.zh


def in_both(words: object) -> tuple[str, str]:
    """``words`` (an error, Said words, anything) as shown in English and in Chinese."""
    with speaking("en"):
        en = str(words)
    with speaking("zh-CN"):
        return en, str(words)


def joined(parts: list[Said], en: str = "; ", zh: str = "；") -> Said:
    """Several bilingual words as one, separated by ``en`` / ``zh``."""
    return Said(en.join(str.__str__(p) for p in parts), zh.join(p.zh for p in parts))


class TierwiseError(Exception):
    """Base class: a problem the user can fix; the CLI prints it without a traceback."""

    #: The message in Chinese and in English, when it was made in both (the first
    #: argument is the message shown where no language was chosen).
    zh: str | None = None
    en: str | None = None

    def __init__(self, *args: object, zh: str | None = None, en: str | None = None) -> None:
        super().__init__(*args)
        if args and isinstance(args[0], Said):  # words made in both languages
            said_en, said_zh = args[0].both()
            en, zh = en if en is not None else said_en, zh if zh is not None else said_zh
        if zh is not None:
            self.zh = zh
        if en is not None:
            self.en = en

    @classmethod
    def about(cls, where: str, cause: object) -> Self:
        """``cause`` (an error, words) said of ``where`` (a path, a key, or Said words),
        in both languages: "where: …"."""
        en, zh = in_both(cause)
        where_en, where_zh = in_both(where)
        # shown where no language is chosen: as the cause would be
        shown = f"{where_zh}：{zh}" if str(cause) == zh and zh != en else f"{where_en}: {en}"
        return cls(shown, zh=f"{where_zh}：{zh}", en=f"{where_en}: {en}")

    def __str__(self) -> str:
        chosen = _SPEAKING.get()
        if chosen == "zh-CN" and self.zh is not None:
            return self.zh
        if chosen == "en" and self.en is not None:
            return self.en
        return super().__str__()


class Invalid(TierwiseError, ValueError):
    """A value a definition's validator refuses: pydantic reports it as that field's error,
    worded in both languages (``definitions.invalid``)."""


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
