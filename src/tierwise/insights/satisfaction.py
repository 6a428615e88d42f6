"""Satisfaction: NPS and CSAT from the feedback customers gave, overall and by a dimension.

The per-customer values are the segment language's own fields, computed by its compiler at
``as_of`` (so that a figure here and a rule such as ``nps_class = 'promoter'`` count the same
customers): ``nps`` — the customer's latest NPS score (0–10), ``nps_class`` — promoter
(9–10), passive (7–8) or detractor (0–6), and ``csat`` — the mean of their CSAT ratings
(1–5). From them:

* **NPS** = 100 × (promoters − detractors) / customers with a score, from −100 to 100
  (Reichheld's Net Promoter Score, one answer per customer: their latest);
* **CSAT** = the mean of the customers' mean ratings, and the share of rated customers
  whose mean is 4 or more ("satisfied", the usual top-two-box reading of a 1–5 scale).

``by`` groups the same figures by a column of the latest snapshot (tier, lifecycle, RFM
segment, churn risk) or by a customer field (city, industry, owner, …); ``segment`` keeps
the members of one segment at ``as_of``.

``in_windows`` gives the same figures for the answers *given in* each of several windows of
time (a month, a review period): each customer counts with their latest NPS score in the
window and the mean of their CSAT ratings in it — the trend, and the review's NPS and CSAT
beside conversion and churn. A customer who answered nothing in a window is not in it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tierwise.compile.dialects import render
from tierwise.compile.segments import compile_values
from tierwise.definitions.segment_ast import Field, Operand
from tierwise.definitions.segment_fields import CUSTOMER_FIELDS, NPS_CLASSES
from tierwise.definitions.vocabulary import VALUE_COLUMNS
from tierwise.engines.base import naive_utc
from tierwise.errors import TierwiseError
from tierwise.segments.evaluate import Evaluation
from tierwise.store import customers as customer_store
from tierwise.workspace import Workspace

#: The customers' own fields satisfaction is broken down by (none of them personal data;
#: a person's role at its account, not the account's id: one group per account says nothing).
CUSTOMER_DIMENSIONS = tuple(c for c in customer_store.FILTER_COLUMNS if c != "account_id")
SATISFIED = 4.0


def dimensions() -> list[str]:
    return [*VALUE_COLUMNS, *CUSTOMER_DIMENSIONS]


def default_as_of(ws: Workspace) -> datetime:
    """The latest snapshot's instant (the dashboard's figures are of it), else now."""
    from tierwise.models import compute
    from tierwise.store.control import utcnow

    found = compute.list_snapshots(ws)
    return max((s["as_of"] for s in found), default=None) or utcnow()


def labelled(ws: Workspace, found: dict[str, Any], lang: str) -> dict[str, Any]:
    """``found`` with each group's value in words (``label``) beside its code."""
    from tierwise.segments.vocabulary import vocabulary

    by = found.get("by")
    if by is None:
        return found
    words = vocabulary(ws, lang)
    groups = [{**g, "label": g["value"] if g["value"] is None
               else words.column_label(by, g["value"], lang)} for g in found["groups"]]
    return {**found, "groups": groups}


def satisfaction(ws: Workspace, as_of: datetime, by: str | None = None,
                 segment: str | None = None) -> dict[str, Any]:
    """NPS and CSAT at ``as_of`` for everyone (or the members of ``segment`` then), and per
    value of ``by`` when given."""
    if by is not None and by not in VALUE_COLUMNS and by not in CUSTOMER_DIMENSIONS:
        raise TierwiseError(f"cannot break satisfaction down by {by!r}; expected one of "
                            f"{', '.join(dimensions())}",
                            zh=f"不能按 {by!r} 细分满意度：可用的维度有 {', '.join(dimensions())}")
    if by is None and segment is not None:  # the same figures, from the members' answers
        members = _members(ws, segment, as_of)
        return {"as_of": as_of, "customers": members.num_rows, "segment": segment,
                **in_windows(ws, [(EPOCH, as_of + EPSILON)], members)[0]["figures"]}
    operands: list[Operand] = [Field(("nps",)), Field(("nps_class",)), Field(("csat",))]
    if by is not None:
        name = VALUE_COLUMNS.get(by, by)
        assert by in VALUE_COLUMNS or name in CUSTOMER_FIELDS
        operands.append(Field(tuple(name.split("."))))
    compiled = compile_values(operands, ws.engine.name, as_of, ws.config.zone)
    with Evaluation(ws, as_of) as evaluation:
        table: pa.Table = evaluation.run(compiled)
    if segment is not None:  # the members' figures (by: within them)
        table = table.filter(pc.is_in(table["customer_id"], _members(ws, segment, as_of)
                                      ["customer_id"]))
    answered = table.filter(pc.or_(pc.is_valid(table["v0"]), pc.is_valid(table["v2"])))
    rows = answered.to_pylist()
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row.get("v3") if by is not None else None].append(row)
    found = {"as_of": as_of, "customers": table.num_rows, **_figures(rows)}
    if segment is not None:
        found["segment"] = segment
    if by is not None:
        found["by"] = by
        found["groups"] = sorted(
            ({"value": value, **_figures(members)} for value, members in groups.items()),
            key=lambda g: (-g["respondents"], str(g["value"])))
    return found


#: Before any answer, and the step that makes "at or before as_of" an exclusive end.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPSILON = timedelta(microseconds=1)


def _members(ws: Workspace, segment: str, as_of: datetime) -> pa.Table:
    """The members of ``segment`` at ``as_of`` as a groups table (customer_id, grp)."""
    from tierwise.segments.catalog import known
    from tierwise.segments.membership import members_at

    ids = members_at(ws, known(ws, segment), as_of)
    return pa.table({"customer_id": pa.array(ids, pa.string()),
                     "grp": pa.array([segment] * len(ids), pa.string())})


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of customers' (latest NPS class ``v1``, mean CSAT ``v2``)."""
    classes = [r["v1"] for r in rows if r["v1"] is not None]
    ratings = [float(r["v2"]) for r in rows if r["v2"] is not None]
    return from_counts(respondents=len(classes), promoters=classes.count("promoter"),
                       passives=classes.count("passive"),
                       detractors=classes.count("detractor"), rated=len(ratings),
                       csat_sum=sum(ratings), satisfied=sum(r >= SATISFIED for r in ratings))


def from_counts(respondents: int, promoters: int, passives: int, detractors: int, rated: int,
                csat_sum: float, satisfied: int) -> dict[str, Any]:
    """NPS, CSAT and the satisfied share from the counts: the one place they are computed."""
    return {
        "respondents": respondents, "promoters": promoters, "passives": passives,
        "detractors": detractors,
        "nps": round(100.0 * (promoters - detractors) / respondents, 1) if respondents
        else None,
        "rated": rated,
        "csat": round(csat_sum / rated, 2) if rated else None,
        "satisfied_share": round(satisfied / rated, 4) if rated else None,
    }


def _class_counts() -> str:
    """SQL counting the NPS classes of column ``nps`` (the thresholds of ``NPS_CLASSES``)."""
    bounds = dict(NPS_CLASSES)
    return (f"count(*) FILTER (WHERE nps >= {bounds['promoter']}) AS promoters, "
            f"count(*) FILTER (WHERE nps >= {bounds['passive']} "
            f"AND nps < {bounds['promoter']}) AS passives, "
            f"count(*) FILTER (WHERE nps >= {bounds['detractor']} "
            f"AND nps < {bounds['passive']}) AS detractors")


def in_windows(ws: Workspace, windows: list[tuple[datetime, datetime]],
               groups: pa.Table | None = None) -> list[dict[str, Any]]:
    """NPS and CSAT of the answers given in each window ``[start, end)``, overall
    (``figures``) and, with ``groups`` (customer_id, grp; a customer may be in several),
    per group (``groups``: grp → figures; only groups with an answer)."""
    if not windows:
        return []
    params: dict[str, Any] = {}
    cases = []
    for i, (start, end) in enumerate(windows):
        params[f"s{i}"], params[f"e{i}"] = naive_utc(start), naive_utc(end)
        cases.append(f'WHEN f."at" >= :s{i} AND f."at" < :e{i} THEN {i}')
    counts = (f"count(nps) AS respondents, {_class_counts()}, count(csat) AS rated, "
              f"coalesce(sum(csat), 0) AS csat_sum, "
              f"count(*) FILTER (WHERE csat >= {SATISFIED}) AS satisfied")
    if groups is None:
        grouped = ""
        within = ""
    else:  # everyone in a group once, then each group
        within = "WHERE per.customer_id IN (SELECT customer_id FROM _groups)"
        grouped = f"""UNION ALL
    SELECT per.w, g.grp, 0 AS total, {counts}
    FROM per JOIN _groups g ON g.customer_id = per.customer_id GROUP BY per.w, g.grp"""
    query = f"""
    WITH f AS (
      SELECT f.customer_id, f."at", f.nps, f.csat, CASE {' '.join(cases)} END AS w
      FROM feedback f
    ), n AS (
      SELECT customer_id, w, max_by(nps, "at") AS nps FROM f
      WHERE w IS NOT NULL AND nps IS NOT NULL GROUP BY customer_id, w
    ), c AS (
      SELECT customer_id, w, avg(csat) AS csat FROM f
      WHERE w IS NOT NULL AND csat IS NOT NULL GROUP BY customer_id, w
    ), per AS (
      SELECT coalesce(n.customer_id, c.customer_id) AS customer_id, coalesce(n.w, c.w) AS w,
        n.nps, c.csat
      FROM n FULL OUTER JOIN c ON n.customer_id = c.customer_id AND n.w = c.w
    )
    SELECT per.w, CAST(NULL AS VARCHAR) AS grp, 1 AS total, {counts}
    FROM per {within} GROUP BY per.w
    {grouped}
    """
    tables = {"_groups": groups} if groups is not None else None
    with ws.engine.session(ws.facts.scans(("feedback",)), tables) as session:
        rows = session.query(render(query, ws.engine.name), params).to_pylist()
    out: list[dict[str, Any]] = [{"start": start, "end": end, "figures": _empty(), "groups": {}}
                                 for start, end in windows]
    for row in rows:
        figures = from_counts(**{k: int(row[k] or 0) for k in (
            "respondents", "promoters", "passives", "detractors", "rated", "satisfied")},
            csat_sum=float(row["csat_sum"] or 0))
        entry = out[int(row["w"])]
        if row["total"]:
            entry["figures"] = figures
        else:
            entry["groups"][row["grp"]] = figures
    return out


MONTHS = 12


def months_to(until: datetime, zone: Any, months: int = MONTHS
              ) -> list[tuple[str, datetime, datetime]]:
    """The calendar months (in ``zone``) up to the one holding ``until``, oldest first, as
    (``2026-07``, first instant, end): the last one ends at ``until`` (under way)."""
    local = until.astimezone(zone)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    found = []
    for back in range(months - 1, -1, -1):
        index = first.year * 12 + first.month - 1 - back
        start = first.replace(year=index // 12, month=index % 12 + 1)
        nxt = start.replace(year=(index + 1) // 12, month=(index + 1) % 12 + 1)
        found.append((f"{start:%Y-%m}", start, min(nxt, local)))
    return found


def trend(ws: Workspace, until: datetime, months: int = MONTHS,
          segment: str | None = None) -> list[dict[str, Any]]:
    """NPS and CSAT of the answers given in each calendar month up to ``until`` (the last
    one partial, marked so), of everyone or of the members of ``segment`` at ``until``."""
    if not 1 <= months <= 120:
        raise TierwiseError(f"months {months}: expected 1 to 120",
                            zh=f"月数 {months}：应为 1 到 120")
    windows = months_to(until, ws.config.zone, months)
    groups = _members(ws, segment, until) if segment is not None else None
    found = in_windows(ws, [(start, end) for _, start, end in windows], groups)
    return [{"month": name, "start": start, "end": end,
             "partial": end < start.replace(year=start.year + (start.month == 12),
                                            month=start.month % 12 + 1),
             **w["figures"]} for (name, start, end), w in zip(windows, found, strict=True)]


def respondents(ws: Workspace, start: datetime, end: datetime) -> pa.Array:
    """The customers who gave an NPS score in ``[start, end)``: those ``in_windows``
    counts as that window's respondents."""
    query = """
    SELECT DISTINCT customer_id FROM feedback
    WHERE nps IS NOT NULL AND "at" >= :start AND "at" < :end
    """
    with ws.engine.session(ws.facts.scans(("feedback",))) as session:
        found = session.query(render(query, ws.engine.name),
                              {"start": naive_utc(start), "end": naive_utc(end)})
    return found.column("customer_id").combine_chunks()


def of_customer(ws: Workspace, customer_id: str, as_of: datetime) -> dict[str, Any]:
    """One customer's satisfaction at ``as_of``: their latest NPS score and its class, the
    mean of their CSAT ratings, and how many answers of each they gave."""
    from tierwise.definitions.segment_fields import nps_class

    at = naive_utc(as_of)
    query = """
    SELECT max_by(nps, "at") FILTER (WHERE nps IS NOT NULL) AS nps,
      count(nps) AS nps_answers, avg(csat) AS csat, count(csat) AS csat_answers
    FROM feedback WHERE customer_id = :customer AND "at" <= :as_of
    """
    with ws.engine.session(ws.facts.scans(("feedback",))) as session:
        row = session.query(render(query, ws.engine.name),
                            {"customer": customer_id, "as_of": at}).to_pylist()[0]
    score = row["nps"]
    return {"nps": score, "nps_class": nps_class(score), "nps_answers": int(row["nps_answers"]),
            "csat": None if row["csat"] is None else round(float(row["csat"]), 2),
            "csat_answers": int(row["csat_answers"])}


def _empty() -> dict[str, Any]:
    return from_counts(0, 0, 0, 0, 0, 0.0, 0)


__all__ = ["MONTHS", "SATISFIED", "default_as_of", "dimensions", "from_counts", "in_windows",
           "labelled", "months_to", "of_customer", "respondents", "satisfaction", "trend"]
