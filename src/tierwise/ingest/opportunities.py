"""What an import of opportunities adds to the rows as read: their stages named as the
workspace names them, when each reached its stage, and the history of moves.

For each imported opportunity, against the version already stored:

- ``stage`` must name one of the workspace's ``opportunity_stages`` (or its English label,
  any case): a row that names none is rejected with the stages listed, and nothing is
  imported.
- ``stage_at`` (when it reached its stage), when the source leaves it empty: kept from the
  stored version if the stage is unchanged; for a new opportunity in the first stage its
  ``created_at``; otherwise the time of the import (never before ``created_at``).
- ``closed_at``, when empty and the stage is ``won_stage`` or ``lost_stage``: kept from the
  stored version if it was already so closed, else ``stage_at``.
- A new opportunity, or one whose stage changed, adds a row to ``opportunity_stages``
  (``from_stage`` the stored stage, ``at`` its ``stage_at``), published with the
  opportunities in the import's transaction; each such move is announced to the triggers
  (``stage_change``) in that transaction too. A move that happened more than a day before
  the import — or a new opportunity created more than a day before it — is announced as a
  ``backfill`` (triggers fire on it only when asked to), so loading a CRM's history does not
  send a message for every old deal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tierwise.definitions.opportunities import stage_values
from tierwise.definitions.schemas import OPPORTUNITIES, OPPORTUNITY_STAGES, TableSchema
from tierwise.errors import Said
from tierwise.ingest.convert import Reject
from tierwise.ingest.mapping import Resolved
from tierwise.store.facts import StagedFile, StagingWriter
from tierwise.workspace import Workspace

#: How old a move may be and still be news (announced as a data change, not a backfill).
RECENT = timedelta(days=1)


@dataclass
class Settled:
    """The history rows to publish with the opportunities, and the moves to announce."""

    history: StagedFile | None = None
    #: Reason → items, one per move: customer, opportunity, from, to, amount, owner,
    #: stage_at.
    moves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def discard(self) -> None:
        if self.history is not None:
            self.history.path.unlink(missing_ok=True)


def settle(ws: Workspace, session: Any, staged: StagedFile, resolved: Resolved,
           now: datetime, keys: Callable[[pa.Table], pa.Array]
           ) -> tuple[list[Reject], Settled]:
    """Name the stages, fill ``stage_at`` / ``closed_at`` in the staged file, and stage the
    history rows (``keys``: their identities, as an import of the history computes them);
    returns the rows rejected for an unknown stage (then nothing is staged)."""
    settled = Settled()
    table = pq.read_table(staged.path)
    if table.num_rows == 0:
        return [], settled
    config = ws.config
    codes, rejects = named_stages(ws, table, resolved)
    if rejects:
        return rejects, settled
    rows = table["_row"].to_pylist()

    ids = table["opportunity_id"].to_pylist()
    stored = _stored(ws, session, ids)
    first = config.opportunity_stages[0]
    closing = (config.won_stage, config.lost_stage)
    given_at = table["stage_at"].to_pylist()
    given_closed = table["closed_at"].to_pylist()
    created = table["created_at"].to_pylist()
    stage_at: list[datetime | None] = []
    closed_at: list[datetime | None] = []
    history: dict[str, list[Any]] = {c.name: [] for c in OPPORTUNITY_STAGES.columns}
    history["_row"] = []
    customers = table["customer_id"].to_pylist()
    amounts, owners = table["amount"].to_pylist(), table["owner"].to_pylist()
    for i, key in enumerate(ids):
        before = stored.get(key)
        code = codes[i]
        at = given_at[i]
        if at is None:
            if before is not None and before["stage"] == code:
                at = before["stage_at"]
            elif before is None and code == first:
                at = created[i]
            else:
                at = now if created[i] is None else max(now, created[i])
        stage_at.append(at)
        closed = given_closed[i]
        if closed is None and code in closing:
            closed = (before["closed_at"] if before is not None and before["stage"] == code
                      and before["closed_at"] is not None else at)
        closed_at.append(closed)
        if before is not None and before["stage"] == code:
            continue
        moved_from = None if before is None else before["stage"]
        for column, value in (("opportunity_id", key), ("customer_id", customers[i]),
                              ("stage", code), ("from_stage", moved_from), ("at", at),
                              ("amount", amounts[i]), ("owner", owners[i]),
                              ("_row", rows[i])):
            history[column].append(value)
        old = at is not None and at < now - RECENT or (
            before is None and created[i] is not None and created[i] < now - RECENT)
        settled.moves.setdefault("backfill" if old else "data_change", []).append(
            {"customer_id": customers[i], "opportunity_id": key, "from": moved_from,
             "to": code, "amount": amounts[i], "owner": owners[i],
             "stage_at": None if at is None else at.isoformat()})

    table = _set(table, "stage", pa.array(codes, pa.string()))
    table = _set(table, "stage_at", pa.array(stage_at, table.schema.field("stage_at").type))
    table = _set(table, "closed_at", pa.array(closed_at, table.schema.field("closed_at").type))
    _rewrite(ws, staged, table)
    if history["opportunity_id"]:
        writer = StagingWriter(ws.facts.staging_dir, OPPORTUNITY_STAGES)
        try:
            moves = pa.Table.from_pydict(history, schema=_history_schema())
            writer.write(moves.append_column("_key", keys(moves)))
        except BaseException:
            writer.discard()
            raise
        settled.history = writer.close()
    return [], settled


def named_stages(ws: Workspace, table: pa.Table, resolved: Resolved, column: str = "stage"
                 ) -> tuple[list[str | None], list[Reject]]:
    """Each row's stage (in ``column``) as the workspace names it, and a reject for each row
    whose stage names none of its ``opportunity_stages`` (imports and real-time intake
    check alike)."""
    values = stage_values(ws.config.opportunity_stages)
    label = resolved.sources.get(column, column)
    codes: list[str | None] = []
    rejects: list[Reject] = []
    for row, value in zip(table["_row"].to_pylist(), table[column].to_pylist(), strict=True):
        code = None if value is None else values.code(value)
        if value is not None and code is None:
            rejects.append(Reject(row, label, value, Said(
                f"not a stage of this workspace; expected one of {values.listing('en')} "
                "(setting opportunity_stages)",
                f"不是本工作区的商机阶段；应为 {values.listing('zh-CN')} 之一"
                "（设置 opportunity_stages）")))
        codes.append(code)
    return codes, rejects


def name_history(ws: Workspace, staged: StagedFile, resolved: Resolved,
                 keys: Callable[[pa.Table], pa.Array]) -> list[Reject]:
    """An import of ``opportunity_stages`` (another system's history): both stages of each
    move named as the workspace names them in the staged file (and each move's identity,
    ``keys``, computed again from the names), or the rows that name none rejected."""
    table = pq.read_table(staged.path)
    if table.num_rows == 0:
        return []
    stages, rejects = named_stages(ws, table, resolved, "stage")
    before, more = named_stages(ws, table, resolved, "from_stage")
    if rejects or more:
        return sorted(rejects + more, key=lambda r: r.row)
    table = _set(table, "stage", pa.array(stages, pa.string()))
    table = _set(table, "from_stage", pa.array(before, pa.string())).drop_columns(["_key"])
    _rewrite(ws, staged, table.append_column("_key", keys(table)), OPPORTUNITY_STAGES)
    return []


def _stored(ws: Workspace, session: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored stage, ``stage_at`` and ``closed_at`` of the opportunities ``ids``."""
    scan = ws.facts.scan("opportunities")
    if not scan.files:
        return {}
    session.register_scan("_stored_opportunities", scan)
    session.register_arrow("_imported_ids", pa.table({"id": pa.array(ids, pa.string())}))
    found = session.query(
        'SELECT o.opportunity_id, o.stage, o.stage_at, o.closed_at '
        'FROM "_stored_opportunities" o JOIN (SELECT DISTINCT id FROM "_imported_ids") i '
        'ON o.opportunity_id = i.id').to_pylist()
    return {r["opportunity_id"]: r for r in found}


def _history_schema() -> pa.Schema:
    return pa.schema([*(pa.field(c.name, c.arrow_type) for c in OPPORTUNITY_STAGES.columns),
                      pa.field("_row", pa.int64())])


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _rewrite(ws: Workspace, staged: StagedFile, table: pa.Table,
             schema: TableSchema = OPPORTUNITIES) -> None:
    """``staged`` holding ``table`` instead (written aside, then moved over it)."""
    writer = StagingWriter(ws.facts.staging_dir, schema)
    try:
        writer.write(table)
        writer.close()
    except BaseException:
        writer.discard()
        raise
    writer.staged.path.replace(staged.path)


__all__ = ["Settled", "name_history", "named_stages", "settle"]
