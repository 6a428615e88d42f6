"""Field types for JSON request bodies that take exactly the JSON type the schema names.

Pydantic's lax mode would take ``true`` for an integer, ``1`` or ``"yes"`` for a boolean,
and a number (of seconds since 1970) for a date-time: a client that sends those has a bug
that the answer should name, not guess around. Bodies use ``StrictInt``, ``StrictFloat``
(which takes integers too: JSON has one number type) and ``StrictBool`` from pydantic, and
``Instant`` from here.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from tierwise.definitions.segment_ast import RuleLimitError, check_as_of
from tierwise.errors import Invalid

#: Text that is a number: pydantic would read it as seconds since 1970.
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _text(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and not _NUMBER.fullmatch(value)):
        return value
    raise Invalid("expected a date-time as ISO 8601 text, such as "
                  "2026-06-30T18:00:00+08:00",
                  zh="应为 ISO 8601 格式的日期时间文本，例如 2026-06-30T18:00:00+08:00")


def _in_range(value: datetime) -> datetime:
    try:
        check_as_of(value)
    except RuleLimitError as exc:
        raise Invalid.about("as_of", exc) from None
    return value


#: A date-time sent as ISO 8601 text, from 1900 to 2999.
Instant = Annotated[datetime, BeforeValidator(_text), AfterValidator(_in_range)]

__all__ = ["Instant"]
