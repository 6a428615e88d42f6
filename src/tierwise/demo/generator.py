"""A realistic generated workspace: customers with their own buying rhythm and lifetime.

Every customer gets a purchase rate λ ~ Gamma and, after each purchase, a chance p ~ Beta of
going quiet for good (the BG/NBD story), and an average spend of their own (the Gamma-Gamma
story), so RFM, CLV and churn models have real structure to find. B2B accounts buy larger
baskets and have owners; events, tickets and feedback follow each customer's activity.

Generation runs in chunks of customers, each from its own seeded random stream, so the result
depends only on the seed, the size and the end date, and memory stays bounded at any size.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tierwise.demo import vocab

CHUNK = 50_000
DAY = 86_400
US = 1_000_000


@dataclass(frozen=True)
class DemoSpec:
    customers: int = 5_000
    seed: int = 7
    locale: str = "zh-CN"
    #: Last day of generated history (inclusive); the default is yesterday.
    end: date | None = None
    years: float = 3.0
    #: Scales purchase rates up and dropout chances down (4: ~7 orders, 23 events each).
    activity: float = 1.0

    @property
    def end_date(self) -> date:
        return self.end or (datetime.now(UTC).date() - timedelta(days=1))


@dataclass(frozen=True)
class _Lang:
    zh: bool

    def pick(self, zh: list, en: list) -> list:  # type: ignore[type-arg]
        return zh if self.zh else en


def _ts(seconds: np.ndarray) -> pa.Array:
    return pa.array((seconds * US).astype(np.int64), pa.timestamp("us", tz="UTC"))


def _choice(rng: np.random.Generator, options: list[str], n: int,
            weights: list[float] | None = None) -> np.ndarray:
    p = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=n, p=p)]


def _with_nulls(rng: np.random.Generator, values: np.ndarray, present: float) -> list:  # type: ignore[type-arg]
    keep = rng.random(len(values)) < present
    return [v if k else None for v, k in zip(values.tolist(), keep.tolist(), strict=True)]


def _per_customer_ids(prefix: str, ids: np.ndarray, owner: np.ndarray) -> list[str]:
    """``O000123-2`` is customer C000123's second order; ``owner`` must be sorted."""
    if len(owner) == 0:
        return []
    starts = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
    seq = np.arange(len(owner)) - np.repeat(starts, np.diff(np.r_[starts, len(owner)])) + 1
    return [f"{prefix}{ids[o][1:]}-{k}" for o, k in zip(owner.tolist(), seq.tolist(),
                                                         strict=True)]


def generate_chunk(spec: DemoSpec, index: int) -> dict[str, pa.Table]:
    """All tables for customers ``index*CHUNK`` … (at most CHUNK of them)."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, index]))
    lang = _Lang(spec.locale == "zh-CN")
    first = index * CHUNK
    n = min(CHUNK, spec.customers - first)
    width = max(6, len(str(spec.customers)))
    ids = np.array([f"C{i:0{width}d}" for i in range(first + 1, first + n + 1)], dtype=object)
    end = datetime.combine(spec.end_date, datetime.min.time(), UTC).timestamp() + DAY - 1
    start = end - spec.years * 365.25 * DAY

    b2b = rng.random(n) < 0.25
    signup = start + rng.random(n) * (end - start - DAY)
    rate = rng.gamma(0.7, 1 / 110, n) * np.where(b2b, 1.5, 1.0) * spec.activity  # per day
    dropout = rng.beta(0.9, 3.0 * spec.activity, n)
    spend = np.exp(rng.normal(np.log(260), 0.6, n)) * np.where(b2b, 15, 1)

    # -- orders: a purchase at acquisition, then Poisson purchases until the customer drops
    buyer = rng.random(n) < 0.85
    t = signup + rng.exponential(7 * DAY, n)
    active = buyer & (t <= end)
    order_cust: list[np.ndarray] = []
    order_time: list[np.ndarray] = []
    last_seen = signup.copy()
    for _ in range(400):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        order_cust.append(idx)
        order_time.append(t[idx])
        last_seen[idx] = t[idx]
        quits = rng.random(len(idx)) < dropout[idx]
        t[idx] = t[idx] + rng.exponential(1 / rate[idx]) * DAY
        active[idx] = ~quits & (t[idx] <= end)
    oc = np.concatenate(order_cust) if order_cust else np.zeros(0, int)
    ot = np.concatenate(order_time) if order_time else np.zeros(0)
    order_sort = np.lexsort((ot, oc))
    oc, ot = oc[order_sort], ot[order_sort]
    m = len(oc)
    n_orders = np.bincount(oc, minlength=n)
    amount = np.round(spend[oc] * rng.gamma(6, 1 / 6, m), 2)
    status = _choice(rng, ["paid", "refunded", "cancelled"], m, [94, 4, 2])
    categories = lang.pick(vocab.CATEGORIES_ZH, vocab.CATEGORIES_EN)
    channels = lang.pick(vocab.CHANNELS_ZH, vocab.CHANNELS_EN)
    cust_channel = _choice(rng, channels, n)
    same_channel = rng.random(m) < 0.7
    orders = pa.table({
        "order_id": pa.array(_per_customer_ids("O", ids, oc), pa.string()),
        "customer_id": pa.array(ids[oc].tolist(), pa.string()),
        "ordered_at": _ts(ot),
        "amount": pa.array(amount, pa.float64()),
        "currency": pa.array(["CNY" if lang.zh else "USD"] * m, pa.string()),
        "status": pa.array(status.tolist(), pa.string()),
        "quantity": pa.array(rng.integers(1, 6, m), pa.int64()),
        "product_id": pa.array([f"P{v:04d}" for v in rng.zipf(1.6, m) % 2000], pa.string()),
        "category": pa.array(_choice(rng, categories, m).tolist(), pa.string()),
        "cost": pa.array(np.round(amount * rng.uniform(0.35, 0.8, m), 2), pa.float64()),
        "discount": pa.array(np.where(rng.random(m) < 0.3,
                                      np.round(amount * rng.uniform(0.05, 0.2, m), 2), 0.0)),
        "channel": pa.array(np.where(same_channel, cust_channel[oc],
                                     _choice(rng, channels, m)).tolist(), pa.string()),
    })

    # -- events: more for busy customers, within the customer's active period
    dropped_at = np.where(n_orders > 0, last_seen, signup)
    horizon = np.minimum(end, np.where(n_orders > 0, dropped_at + 60 * DAY, signup + 90 * DAY))
    n_events = rng.poisson(np.where(n_orders > 0, 3 + 2.5 * n_orders, 2))
    ec = np.repeat(np.arange(n), n_events)
    et = signup[ec] + rng.random(len(ec)) * np.maximum(horizon[ec] - signup[ec], 0)
    etype = _choice(rng, ["page_view", "email_open", "login", "download"], len(ec),
                    [55, 20, 17, 8])
    pricing = rng.random(m) < 0.3  # pricing-page visits in the days before a purchase
    ec = np.concatenate([ec, oc[pricing]])
    et = np.concatenate([et, ot[pricing] - rng.random(int(pricing.sum())) * 3 * DAY])
    etype = np.concatenate([etype, np.full(int(pricing.sum()), "page_view", dtype=object)])
    # Properties come from a few distinct JSON texts: pick them by index, not per event.
    page_json = np.array([json.dumps({"page": p}) for p in vocab.EVENT_PAGES], dtype=object)
    campaign_json = np.array([json.dumps({"campaign": c}) for c in vocab.CAMPAIGNS],
                             dtype=object)
    page_pick = rng.choice(len(page_json), len(ec), p=np.array([30, 20, 12, 10, 12, 10, 6])
                           / 100)
    page_pick[len(ec) - int(pricing.sum()):] = vocab.EVENT_PAGES.index("/pricing")
    props = np.full(len(ec), None, dtype=object)
    props[etype == "page_view"] = page_json[page_pick][etype == "page_view"]
    is_email = etype == "email_open"
    props[is_email] = campaign_json[rng.integers(0, len(campaign_json), len(ec))][is_email]
    props[etype == "download"] = json.dumps({"asset": "whitepaper.pdf"})
    ev_order = np.lexsort((et, ec))
    events = pa.table({
        "event_id": pa.array(_per_customer_ids("E", ids, ec[ev_order]), pa.string()),
        "customer_id": pa.array(ids[ec[ev_order]].tolist(), pa.string()),
        "occurred_at": _ts(np.minimum(et[ev_order], end)),
        "type": pa.array(etype[ev_order].tolist(), pa.string()),
        "properties": pa.array(props[ev_order].tolist(), pa.string()),
    })

    # -- tickets and feedback: unhappy (likely to drop) customers complain more
    n_tickets = rng.poisson(0.1 + 0.06 * n_orders + 0.3 * dropout)
    tc = np.repeat(np.arange(n), n_tickets)
    opened = signup[tc] + rng.random(len(tc)) * np.maximum(horizon[tc] - signup[tc], DAY)
    opened = np.minimum(opened, end - DAY)
    closed = opened + rng.exponential(2 * DAY, len(tc))
    is_closed = (rng.random(len(tc)) < 0.85) & (closed <= end)
    csat = np.clip(np.round(5 - 4 * dropout[tc] + rng.normal(0, 0.8, len(tc))), 1, 5)
    tickets = pa.table({
        "ticket_id": pa.array(_per_customer_ids("T", ids, tc), pa.string()),
        "customer_id": pa.array(ids[tc].tolist(), pa.string()),
        "opened_at": _ts(opened),
        "closed_at": pa.array([int(c * US) if ok else None for c, ok in
                               zip(closed.tolist(), is_closed.tolist(), strict=True)],
                              pa.timestamp("us", tz="UTC")),
        "priority": pa.array(_choice(rng, ["low", "normal", "high", "urgent"], len(tc),
                                     [30, 50, 15, 5]).tolist(), pa.string()),
        "status": pa.array(np.where(is_closed, "closed", "open").tolist(), pa.string()),
        "category": pa.array(_choice(rng, lang.pick(vocab.TICKET_CATEGORIES_ZH,
                                                    vocab.TICKET_CATEGORIES_EN), len(tc))
                             .tolist(), pa.string()),
        "csat": pa.array([int(v) if ok else None for v, ok in
                          zip(csat.tolist(), is_closed.tolist(), strict=True)], pa.int64()),
    })
    n_feedback = rng.poisson(np.where(n_orders > 0, 0.4, 0.05))
    fc = np.repeat(np.arange(n), n_feedback)
    f_at = np.minimum(signup[fc] + rng.random(len(fc)) * np.maximum(horizon[fc] - signup[fc],
                                                                    DAY), end)
    nps = np.clip(np.round(9.5 - 9 * dropout[fc] + rng.normal(0, 1.5, len(fc))), 0, 10)
    comments = lang.pick(vocab.COMMENTS_ZH, vocab.COMMENTS_EN)
    feedback = pa.table({
        "customer_id": pa.array(ids[fc].tolist(), pa.string()),
        "at": _ts(f_at),
        "nps": pa.array(nps.astype(np.int64), pa.int64()),
        "csat": pa.array(np.clip(np.round(nps / 2), 1, 5).astype(np.int64), pa.int64()),
        "comment": pa.array([c or None for c in _choice(rng, comments, len(fc)).tolist()],
                            pa.string()),
    })

    # -- referrals: a few customers were brought in by someone who signed up earlier
    by_signup = np.argsort(signup, kind="stable")
    referred_rank = np.flatnonzero(rng.random(n) < 0.05)
    referred_rank = referred_rank[referred_rank > 0]
    referrer_rank = (rng.random(len(referred_rank)) * referred_rank).astype(int)
    referred, referrer = by_signup[referred_rank], by_signup[referrer_rank]
    referrals = pa.table({
        "referrer_id": pa.array(ids[referrer].tolist(), pa.string()),
        "referred_id": pa.array(ids[referred].tolist(), pa.string()),
        "at": _ts(signup[referred]),
    })

    customers = _customers(rng, lang, ids, b2b, signup, end, cust_channel)
    opportunities, stages = _pipeline(rng, lang, ids, b2b, signup, end, spend,
                                      customers["owner"].to_pylist())
    # the B2B accounts' people, from a stream of their own (the rest stays as it was)
    contacts, contact_events = _contacts(
        np.random.default_rng(np.random.SeedSequence([spec.seed, index, 2])), lang,
        customers, b2b, signup, horizon, end, page_json, campaign_json)
    customers = pa.concat_tables([customers, contacts], promote_options="default")
    events = pa.concat_tables([events, contact_events])
    return {"customers": customers, "orders": orders, "events": events, "tickets": tickets,
            "feedback": feedback, "referrals": referrals, "opportunities": opportunities,
            "opportunity_stages": stages}


#: The default pipeline, the chance to move on from each open stage (else lost), the
#: mean days spent in it, and the win probability a sales rep would record.
_STAGES = ("线索", "商机", "方案", "谈判")
_ADVANCE = (0.6, 0.65, 0.7, 0.6)
_STAGE_DAYS = (10.0, 14.0, 18.0, 12.0)
_PROBABILITY = {"线索": 10.0, "商机": 25.0, "方案": 45.0, "谈判": 70.0, "赢单": 100.0,
                "输单": 0.0}


def _pipeline(rng: np.random.Generator, lang: _Lang, ids: np.ndarray, b2b: np.ndarray,
              signup: np.ndarray, end: float, spend: np.ndarray,
              owners: list[str | None]) -> tuple[pa.Table, pa.Table]:
    """Opportunities of the B2B accounts and each one's moves through the stages: most
    stop along the way (lost), a few are still open at the end of the history."""
    count = np.where(b2b, rng.poisson(1.6, len(ids)), 0)
    oc = np.repeat(np.arange(len(ids)), count)
    created = signup[oc] + rng.random(len(oc)) * np.maximum(end - DAY - signup[oc], DAY)
    amount = np.round(spend[oc] * rng.gamma(3, 1 / 1.5, len(oc)), -2) + 1000
    names = lang.pick(vocab.DEAL_NAMES_ZH, vocab.DEAL_NAMES_EN)
    wins = lang.pick(vocab.WIN_REASONS_ZH, vocab.WIN_REASONS_EN)
    losses = lang.pick(vocab.LOSS_REASONS_ZH, vocab.LOSS_REASONS_EN)
    opp_ids = _per_customer_ids("D", ids, oc)
    rows: dict[str, list[Any]] = {k: [] for k in (
        "opportunity_id", "customer_id", "name", "stage", "amount", "probability",
        "created_at", "expected_close", "stage_at", "closed_at", "owner", "reason")}
    moves: dict[str, list[Any]] = {k: [] for k in (
        "opportunity_id", "customer_id", "stage", "from_stage", "at", "amount", "owner")}
    for j, k in enumerate(oc.tolist()):
        at, stage = float(created[j]), _STAGES[0]
        path: list[tuple[str, str | None, float]] = [(stage, None, at)]
        for step, advance in enumerate(_ADVANCE):
            later = at + rng.exponential(_STAGE_DAYS[step]) * DAY
            if later > end:
                break
            previous, at = stage, later
            stage = (_STAGES[step + 1] if step + 1 < len(_STAGES) else "赢单") \
                if rng.random() < advance else "输单"
            path.append((stage, previous, at))
            if stage in ("赢单", "输单"):
                break
        owner = owners[k]
        for moved_to, moved_from, moved_at in path:
            for column, value in (("opportunity_id", opp_ids[j]), ("customer_id", ids[k]),
                                  ("stage", moved_to), ("from_stage", moved_from),
                                  ("at", int(moved_at * US)), ("amount", float(amount[j])),
                                  ("owner", owner)):
                moves[column].append(value)
        closed = stage in ("赢单", "输单")
        reasons = wins if stage == "赢单" else losses
        for column, value in (
                ("opportunity_id", opp_ids[j]), ("customer_id", ids[k]),
                ("name", str(rng.choice(names))), ("stage", stage),
                ("amount", float(amount[j])), ("probability", _PROBABILITY[stage]),
                ("created_at", int(created[j] * US)),
                ("expected_close", int((created[j] + rng.uniform(45, 120) * DAY) // DAY)),
                ("stage_at", int(at * US)), ("closed_at", int(at * US) if closed else None),
                ("owner", owner), ("reason", str(rng.choice(reasons)) if closed else None)):
            rows[column].append(value)
    stamp = pa.timestamp("us", tz="UTC")
    types = {"amount": pa.float64(), "probability": pa.float64(), "created_at": stamp,
             "expected_close": pa.date32(), "stage_at": stamp, "closed_at": stamp, "at": stamp}
    return (pa.table({c: pa.array(v, types.get(c, pa.string())) for c, v in rows.items()}),
            pa.table({c: pa.array(v, types.get(c, pa.string())) for c, v in moves.items()}))


def _customers(rng: np.random.Generator, lang: _Lang, ids: np.ndarray, b2b: np.ndarray,
               signup: np.ndarray, end: float, channel: np.ndarray) -> pa.Table:
    n = len(ids)
    if lang.zh:
        surname = _choice(rng, vocab.SURNAMES_ZH, n)
        given = _choice(rng, vocab.GIVEN_ZH, n)
        given2 = np.where(rng.random(n) < 0.7, _choice(rng, vocab.GIVEN_ZH, n), "")
        person = [a + b + c for a, b, c in zip(surname, given, given2, strict=True)]
        places = vocab.CITIES_ZH
        industries = vocab.INDUSTRIES_ZH
        company = [f"{c}{g}{h}{ind[:2]}有限公司" for c, g, h, ind in zip(
            _choice(rng, [p[0] for p in places], n), given, _choice(rng, vocab.GIVEN_ZH, n),
            _choice(rng, industries, n), strict=True)]
        # Mobile prefixes in use in mainland China, so numbers pass phone validation.
        prefixes = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150",
                    "151", "152", "155", "156", "157", "158", "159", "166", "176", "177",
                    "180", "181", "182", "183", "185", "186", "187", "188", "189", "199"]
        # Mostly E.164 already, some as people type them: cleaning on import has work to do.
        style = rng.choice(3, n, p=[0.85, 0.10, 0.05])
        phone = [f"+86{a}{b:08d}" if s == 0 else f"{a}{b:08d}" if s == 1
                 else f"{a} {b // 10**4:04d} {b % 10**4:04d}"
                 for a, b, s in zip(_choice(rng, prefixes, n), rng.integers(0, 10**8, n),
                                    style, strict=True)]
        country = "中国"
        owners, tags = vocab.OWNERS_ZH, vocab.TAGS_ZH
    else:
        person = [f"{a} {b}" for a, b in zip(_choice(rng, vocab.FIRST_EN, n),
                                            _choice(rng, vocab.LAST_EN, n), strict=True)]
        places = vocab.CITIES_EN
        industries = vocab.INDUSTRIES_EN
        company = [f"{a} {b}" for a, b in zip(_choice(rng, vocab.LAST_EN, n), _choice(
            rng, ["Industries", "Group", "LLC", "Inc.", "Partners"], n), strict=True)]
        phone = [f"+1 {a} 555 {b:04d}" for a, b in zip(rng.integers(201, 990, n),
                                                       rng.integers(0, 10_000, n), strict=True)]
        country = "United States"
        owners, tags = vocab.OWNERS_EN, vocab.TAGS_EN
    where = rng.choice(len(places), size=n, p=np.array([p[2] for p in places]) /
                       sum(p[2] for p in places))
    handles = [f"{''.join(rng.choice(list('abcdefghijklmnopqrstuvwxyz'), 5))}{i[1:]}"
               for i in ids.tolist()]
    domain = ["example.com", "example.cn", "example.net"]
    email = [f"{h}@{domain[k % 3]}" for k, h in enumerate(handles)]
    age_days = rng.uniform(18, 70, n) * 365.25
    birth = (np.floor(end / DAY - age_days)).astype(np.int32)
    tag_lists = []
    for k in range(n):
        count = rng.choice([0, 0, 1, 1, 2])
        picked = sorted(set(rng.choice(tags, count).tolist())) if count else []
        if b2b[k] and "b2b" in tags:
            picked = sorted(set(picked) | {"b2b"})
        tag_lists.append(json.dumps(picked, ensure_ascii=False) if picked else None)
    cac = np.round(np.where(b2b, rng.gamma(2, 600, n), rng.gamma(2, 40, n)), 2)
    return pa.table({
        "customer_id": pa.array(ids.tolist(), pa.string()),
        "name": pa.array([c if b else p for c, p, b in zip(company, person, b2b.tolist(),
                                                           strict=True)], pa.string()),
        "email": pa.array(_with_nulls(rng, np.array(email, dtype=object), 0.75), pa.string()),
        "phone": pa.array(_with_nulls(rng, np.array(phone, dtype=object), 0.85), pa.string()),
        "gender": pa.array([None if b else g for g, b in zip(
            _choice(rng, ["male", "female", "unknown"], n, [48, 48, 4]).tolist(),
            b2b.tolist(), strict=True)], pa.string()),
        "birth_date": pa.array([None if b or r > 0.6 else int(d) for d, b, r in zip(
            birth.tolist(), b2b.tolist(), rng.random(n).tolist(), strict=True)], pa.date32()),
        "city": pa.array([places[w][0] for w in where], pa.string()),
        "province": pa.array([places[w][1] for w in where], pa.string()),
        "country": pa.array([country] * n, pa.string()),
        "industry": pa.array([i if b else None for i, b in zip(
            _choice(rng, industries, n).tolist(), b2b.tolist(), strict=True)], pa.string()),
        "company_size": pa.array([s if b else None for s, b in zip(
            _choice(rng, vocab.COMPANY_SIZES, n, [30, 30, 20, 12, 8]).tolist(), b2b.tolist(),
            strict=True)], pa.string()),
        "channel": pa.array(channel.tolist(), pa.string()),
        "owner": pa.array([o if b or r < 0.2 else None for o, b, r in zip(
            _choice(rng, owners, n).tolist(), b2b.tolist(), rng.random(n).tolist(),
            strict=True)], pa.string()),
        "signup_at": _ts(signup),
        "acquisition_cost": pa.array(cac, pa.float64()),
        "tags": pa.array(tag_lists, pa.string()),
        "attributes": pa.array([json.dumps({"segment": "B2B" if b else "B2C"})
                                for b in b2b.tolist()], pa.string()),
    })


#: Roles of the people at a B2B account and how common each is among them.
_ROLES = (("decision_maker", 18), ("influencer", 22), ("user", 30), ("purchasing", 12),
          ("finance", 8), ("technical", 10))


def _contacts(rng: np.random.Generator, lang: _Lang, accounts: pa.Table, b2b: np.ndarray,
              signup: np.ndarray, horizon: np.ndarray, end: float, page_json: np.ndarray,
              campaign_json: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """Zero to four people at each B2B account (``C000123-1``…), with a role, the account's
    place, channel and owner, and their own events — webinars, demo requests, pricing
    pages — while the account is active."""
    where = np.flatnonzero(b2b)
    count = rng.choice(5, len(where), p=[0.15, 0.3, 0.3, 0.15, 0.1])
    account = np.repeat(where, count)
    n = len(account)
    seq = np.arange(n) - np.repeat(np.r_[0, np.cumsum(count)[:-1]], count) + 1
    base = accounts.take(pa.array(account, pa.int64())) if n else accounts.slice(0, 0)
    ids = [f"{a}-{k}" for a, k in zip(base["customer_id"].to_pylist(), seq.tolist(),
                                      strict=True)]
    if lang.zh:
        names = [a + b for a, b in zip(_choice(rng, vocab.SURNAMES_ZH, n),
                                       _choice(rng, vocab.GIVEN_ZH, n), strict=True)]
    else:
        names = [f"{a} {b}" for a, b in zip(_choice(rng, vocab.FIRST_EN, n),
                                            _choice(rng, vocab.LAST_EN, n), strict=True)]
    joined = signup[account] + rng.exponential(60 * DAY, n)
    joined = np.minimum(joined, end - DAY)
    roles = _choice(rng, [r for r, _ in _ROLES], n, [w for _, w in _ROLES])
    contacts = pa.table({
        "customer_id": pa.array(ids, pa.string()),
        "name": pa.array(names, pa.string()),
        "email": pa.array([f"contact{c.replace('-', '.').lower()}@example.com"
                           for c in ids], pa.string()),
        "phone": pa.nulls(n, pa.string()),
        "gender": pa.array(_choice(rng, ["male", "female"], n).tolist(), pa.string()),
        "birth_date": pa.nulls(n, pa.date32()),
        "city": base["city"], "province": base["province"], "country": base["country"],
        "industry": pa.nulls(n, pa.string()), "company_size": pa.nulls(n, pa.string()),
        "channel": base["channel"], "owner": base["owner"],
        "account_id": base["customer_id"],
        "role": pa.array(roles.tolist(), pa.string()),
        "signup_at": _ts(joined),
        "acquisition_cost": pa.nulls(n, pa.float64()),
        "tags": pa.nulls(n, pa.string()),
        "attributes": pa.array([json.dumps({"segment": "B2B"})] * n, pa.string()),
    })
    # events while the account is active: those deciding read more about prices
    busy = np.where(np.isin(roles, ["decision_maker", "purchasing"]), 5.0, 3.0)
    n_events = rng.poisson(busy)
    owner = np.repeat(np.arange(n), n_events)
    stop = np.maximum(horizon[account][owner], joined[owner])
    at = joined[owner] + rng.random(len(owner)) * (stop - joined[owner])
    kind = _choice(rng, ["page_view", "email_open", "webinar", "demo_request"], len(owner),
                   [50, 25, 15, 10])
    props = np.full(len(owner), None, dtype=object)
    views = kind == "page_view"
    props[views] = page_json[rng.integers(0, len(page_json), len(owner))][views]
    mails = kind == "email_open"
    props[mails] = campaign_json[rng.integers(0, len(campaign_json), len(owner))][mails]
    people = np.array(ids, dtype=object)
    events = pa.table({
        "event_id": pa.array(_per_customer_ids("E", people, owner), pa.string()),
        "customer_id": pa.array(people[owner].tolist(), pa.string()),
        "occurred_at": _ts(np.minimum(at, end)),
        "type": pa.array(kind.tolist(), pa.string()),
        "properties": pa.array(props.tolist(), pa.string()),
    })
    return contacts, events


def write_demo_files(spec: DemoSpec, out: Path,
                     on_chunk: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Generate every chunk into ``out/<table>/part-NNNNN.parquet``; return row counts."""
    counts: dict[str, int] = {}
    chunks = max(1, -(-spec.customers // CHUNK))
    for index in range(chunks):
        for name, table in generate_chunk(spec, index).items():
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, folder / f"part-{index:05d}.parquet", compression="zstd")
            counts[name] = counts.get(name, 0) + table.num_rows
        if on_chunk:
            on_chunk(index + 1, chunks)
    return counts
