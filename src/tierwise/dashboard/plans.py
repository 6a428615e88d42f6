"""Previews the dashboard shows before anything is saved: a tier rule's effect, and an
uploaded file's columns with the mapping the importer would pick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tierwise.dashboard.data import View, column_floats
from tierwise.models import tiers
from tierwise.models.tiers import TierSpec

SAMPLE_ROWS = 10

#: Tier metric -> snapshot column holding it ("growth" is not kept in snapshots).
METRIC_COLUMNS = {"monetary": "rfm_monetary", "frequency": "rfm_frequency",
                  "recency": "rfm_recency", "profit": "profit_total", "clv": "clv",
                  "referrals": "referrals"}


def tier_plan(view: View, spec: TierSpec) -> dict[str, Any]:
    """Customers per tier now and under ``spec``, from the latest snapshot's measures."""
    t = view.table
    ids = np.asarray(t.column("customer_id").to_pylist(), dtype=object)
    revenue = np.nan_to_num(column_floats(t, "revenue_total"))
    bought = np.nan_to_num(column_floats(t, "orders_total")) > 0
    notes = []
    if spec.weights == view.settings.tiers.weights:
        score = np.nan_to_num(column_floats(t, "value_score"))
    else:
        metrics = {name: np.nan_to_num(column_floats(t, column))
                   for name, column in METRIC_COLUMNS.items()}
        metrics["growth"] = np.zeros(len(ids))
        if spec.weights.get("growth"):
            notes.append("growth is not kept in snapshots: the preview counts it as 0; the "
                         "next compute uses the real figures")
        score = tiers.value_score(metrics, spec.weights, bought)
    after = tiers.assign_tiers(spec, ids, score, revenue)
    before = np.asarray(t.column("tier").to_pylist(), dtype=object)
    labels = list(dict.fromkeys([*spec.tiers, *view.settings.tiers.tiers]))
    rows = [{"tier": label, "before": int((before == label).sum()),
             "after": int((after == label).sum())} for label in labels]
    return {"tiers": rows, "moved": int((before != after).sum()), "notes": notes,
            "snapshot_id": view.snapshot.snapshot_id}


def inspect_file(path: Path, name: str, table: str) -> dict[str, Any]:
    """Header, the first rows as text and the suggested mapping of an uploaded file."""
    from tierwise.definitions.schemas import TABLES, table_schema
    from tierwise.errors import TierwiseError
    from tierwise.ingest.mapping import matched
    from tierwise.ingest.readers import open_file

    if table not in TABLES:
        raise TierwiseError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
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
