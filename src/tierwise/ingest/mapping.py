"""Column mappings: which source column feeds which canonical column, and how to read it.

A mapping is YAML a person writes once and reuses::

    table: orders
    columns:
      订单号: order_id
      客户编号: customer_id
      下单时间: ordered_at
      实付金额: amount
    formats:
      ordered_at: {date_order: DMY}
      amount: {scale: 0.01}          # the file counts in fen
    defaults:
      currency: CNY
    encoding: gbk
    unknown_customers: create

Without a mapping, source columns whose names match a canonical column or one of its known
spellings (English or Chinese, see ``definitions.schemas``) are taken as that column.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tierwise.definitions import invalid
from tierwise.definitions.schemas import TableSchema, table_schema
from tierwise.errors import Invalid, MappingError
from tierwise.ingest.parsers import DATE_ORDERS, ColumnFormat

UnknownCustomers = Literal["reject", "create"]
IGNORE = "ignore"


class FormatSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str | None = None
    date_order: str | None = None
    scale: float | None = None
    timezone: str | None = None

    @field_validator("date_order")
    @classmethod
    def _order(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in DATE_ORDERS:
            raise Invalid(f"date_order must be one of {DATE_ORDERS}",
                          zh=f"date_order 应为 {DATE_ORDERS} 之一")
        return value.upper() if value else value


class Mapping(BaseModel):
    """A reusable description of a source: column names, formats, constants, policies."""

    model_config = ConfigDict(extra="forbid")
    table: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    formats: dict[str, FormatSpec] = Field(default_factory=dict)
    defaults: dict[str, str] = Field(default_factory=dict)
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    timezone: str | None = None
    date_order: str | None = None
    unknown_customers: UnknownCustomers | None = None

    @classmethod
    def from_yaml(cls, text: str, origin: str = "mapping") -> Mapping:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise MappingError(f"{origin}: not valid YAML: {exc}",
                               zh=f"{origin}：不是有效的 YAML：{exc}") from None
        if not isinstance(data, dict):
            raise MappingError(f"{origin}: expected a YAML mapping at the top level",
                               zh=f"{origin}：顶层应为 YAML 映射（键: 值）")
        for key in ("columns", "defaults"):
            value = data.get(key) or {}
            if not isinstance(value, dict):
                raise MappingError(f"{origin}: {key} must map names to names, such as "
                                   f"'{key}: {{订单号: order_id}}'",
                                   zh=f"{origin}：{key} 应把名称对应到名称，例如 "
                                   f"'{key}: {{订单号: order_id}}'")
            data[key] = {str(k): str(v) for k, v in value.items()}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MappingError.about(origin, invalid.problems(exc)) from None

    @classmethod
    def load(cls, path: str | Path) -> Mapping:
        p = Path(path)
        try:
            return cls.from_yaml(p.read_text(encoding="utf-8"), str(p))
        except OSError as exc:
            raise MappingError(f"cannot read mapping {p}: {exc.strerror}",
                               zh=f"无法读取映射文件 {p}：{exc.strerror}") from None

    def to_yaml(self) -> str:
        data = self.model_dump(exclude_none=True, exclude_defaults=True)
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)

    def with_pairs(self, pairs: list[str]) -> Mapping:
        """Add ``file_col=canonical`` pairs from the command line."""
        columns = dict(self.columns)
        for pair in pairs:
            source, sep, target = pair.partition("=")
            if not sep or not source.strip() or not target.strip():
                raise MappingError(f"--map {pair!r}: expected file_column=canonical_column",
                                   zh=f"--map {pair!r}：应写成 文件列=标准列")
            columns[source.strip()] = target.strip()
        return self.model_copy(update={"columns": columns})


@dataclass
class Resolved:
    """A mapping applied to one source header."""

    schema: TableSchema
    #: canonical column → source column
    sources: dict[str, str]
    #: canonical column → constant text for every row
    constants: dict[str, str]
    #: source columns folded into the schema's extras column (attributes / properties)
    extras: list[str] = field(default_factory=list)
    #: source columns dropped
    ignored: list[str] = field(default_factory=list)
    formats: dict[str, ColumnFormat] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        return {"columns": self.sources, "constants": self.constants, "extras": self.extras,
                "ignored": self.ignored}


def _suggest(name: str, options: list[str], zh: bool = False) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    if not close:
        return ""
    return f"（是不是要写 {'、'.join(close)}？）" if zh else f"; did you mean {', '.join(close)}?"


def matched(schema: TableSchema, header: list[str], taken: set[str] | None = None,
            done: set[str] | None = None) -> dict[str, str]:
    """Canonical column -> source column for header names that spell a column (its name or
    a synonym, in any case); ``taken`` source columns and ``done`` canonical ones are skipped.
    ``taken`` is updated."""
    taken = set() if taken is None else taken
    found: dict[str, str] = {}
    for col in schema.columns:
        if done and col.name in done:
            continue
        for name in header:
            if name in taken:
                continue
            lowered = name.strip().lower()
            if lowered == col.name or lowered in col.synonyms:
                found[col.name] = name
                taken.add(name)
                break
    return found


def resolve(mapping: Mapping, table: str, header: list[str], origin: str) -> Resolved:
    """Match a source header to the canonical columns of ``table``."""
    schema = table_schema(table)
    if mapping.table and mapping.table != table:
        raise MappingError(f"the mapping is for table {mapping.table!r}, not {table!r}",
                           zh=f"这个映射是给表 {mapping.table!r} 用的，不是 {table!r}")
    canonical = schema.names
    header_set = set(header)
    sources: dict[str, str] = {}
    ignored: list[str] = []
    for source, target in mapping.columns.items():
        if source not in header_set:
            raise MappingError(
                f"the mapping names source column {source!r}, which {origin} does not have"
                f"{_suggest(source, header)} (its columns: {', '.join(header)})",
                zh=f"映射中的源列 {source!r} 在 {origin} 中不存在"
                f"{_suggest(source, header, True)}；它的列：{', '.join(header)}"
            )
        if target == IGNORE:
            ignored.append(source)
            continue
        if target not in canonical:
            raise MappingError(
                f"the mapping sends {source!r} to {target!r}, which is not a column of "
                f"{table}{_suggest(target, canonical)} (expected one of {', '.join(canonical)}"
                f" or {IGNORE!r})",
                zh=f"映射把 {source!r} 对应到 {target!r}，但它不是 {table} 的列"
                f"{_suggest(target, canonical, True)}；可用的列：{', '.join(canonical)} "
                f"或 {IGNORE!r}"
            )
        if target in sources:
            raise MappingError(
                f"both {sources[target]!r} and {source!r} are mapped to {target!r}",
                zh=f"{sources[target]!r} 和 {source!r} 都被映射到了 {target!r}"
            )
        sources[target] = source
    taken = set(mapping.columns)
    sources.update(matched(schema, header, taken, set(sources)))
    for key in mapping.defaults:
        if key not in canonical:
            raise MappingError(f"default for unknown column {key!r} of {table}"
                               f"{_suggest(key, canonical)}",
                               zh=f"默认值给了 {table} 不存在的列 {key!r}"
                               f"{_suggest(key, canonical, True)}")
    constants = {k: v for k, v in mapping.defaults.items() if k not in sources}
    missing = [c for c in schema.required if c not in sources and c not in constants]
    if missing:
        raise MappingError(
            f"{origin} has no column for required {table} column(s) {', '.join(missing)}; "
            f"its columns are {', '.join(header)}. Name them with --map 'file_col=canonical' "
            "or a mapping file",
            zh=f"{origin} 缺少 {table} 的必填列 {', '.join(missing)}；它的列是 "
            f"{', '.join(header)}。请用 --map '文件列=标准列' 或映射文件指明"
        )
    leftover = [h for h in header if h not in taken]
    extras = leftover if schema.extras_column else []
    ignored += [h for h in leftover if h not in extras]
    for key in mapping.formats:
        if key not in canonical:
            raise MappingError(f"format for unknown column {key!r} of {table}"
                               f"{_suggest(key, canonical)}",
                               zh=f"格式给了 {table} 不存在的列 {key!r}"
                               f"{_suggest(key, canonical, True)}")
    formats = {
        col: ColumnFormat(
            format=spec.format,
            date_order=spec.date_order or mapping.date_order,
            scale=spec.scale,
            timezone=spec.timezone or mapping.timezone,
        )
        for col, spec in mapping.formats.items()
    }
    for col in schema.columns:
        if col.name not in formats and (mapping.date_order or mapping.timezone):
            formats[col.name] = ColumnFormat(date_order=mapping.date_order,
                                             timezone=mapping.timezone)
    return Resolved(schema, sources, constants, extras, ignored, formats)
