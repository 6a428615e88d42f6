"""What the import screen shows before anything is imported: an uploaded file's columns
with the mapping the importer would pick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SAMPLE_ROWS = 10

def inspect_file(path: Path, name: str, table: str) -> dict[str, Any]:
    """Header, the first rows as text and the suggested mapping of an uploaded file."""
    from tierwise.definitions.schemas import TABLES, table_schema
    from tierwise.errors import TierwiseError
    from tierwise.ingest.mapping import matched
    from tierwise.ingest.readers import open_file

    if table not in TABLES:
        raise TierwiseError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}",
                            zh=f"未知的表 {table!r}：应为 {', '.join(TABLES)} 之一")
    source = open_file(path)
    sample: list[list[Any]] = []
    for batch in source.batches():
        for row in batch.table.slice(0, SAMPLE_ROWS - len(sample)).to_pylist():
            sample.append([None if v is None else str(v) for v in row.values()])
        if len(sample) >= SAMPLE_ROWS:
            break
    header = list(source.info.header)
    schema = table_schema(table)
    suggested = {source_col: target for target, source_col in matched(schema, header).items()}
    return {"file": name, "format": source.info.format, "columns": header, "sample": sample,
            "fields": list(schema.names), "suggested": suggested,
            "required": list(schema.required)}
