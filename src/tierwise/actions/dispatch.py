"""The dispatcher: deliver due outbox rows, retry with exponential backoff, give up into the
dead-letter state after the trigger's ``max_attempts``, replay on request.

Delivery is at least once: a row is marked delivered after its channel returned, so a
process killed in between delivers it again, with the same idempotency key.

>>> backoff(1, 30.0, jitter=0.0), backoff(3, 30.0, jitter=0.0)
(30.0, 120.0)
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

from tierwise.actions.channels import Channels, Failed, Later, Refused, Retry
from tierwise.actions.outbox import EVENT_NAMES
from tierwise.errors import TierwiseError
from tierwise.store import outbox as outbox_store
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

#: Longest wait between two attempts.
MAX_DELAY_SECONDS = 6 * 3600.0
#: Deliveries carried out at once (webhook receivers answer slowly; tasks and tags are
#: quick control-store writes).
PARALLEL = 8
STATUSES = ("pending", "delivered", "dead", "held_out", "suppressed", "held")
#: The kinds of action a delivery carries out (its channel).
ACTIONS = ("webhook", "email", "task", "tag", "notify", "sms")


def backoff(attempts: int, base: float, jitter: float = 0.2) -> float:
    """Seconds to wait after the ``attempts``-th failure: base, 2·base, 4·base, … capped."""
    delay = min(base * 2 ** (attempts - 1), MAX_DELAY_SECONDS)
    return delay * (1 + random.uniform(-jitter, jitter)) if jitter else delay


def _attempt(channels: Channels, row: Any
             ) -> tuple[str, str | None, str | None, float | None]:
    """The outcome of one delivery, the error, the receiver's reply (if any) and, for
    ``later``, the seconds to wait."""
    try:
        channels.deliver(row)
    except Later as exc:
        return "later", str(exc), None, exc.seconds
    except Refused as exc:
        return "suppressed", str(exc), None, None
    except Failed as exc:
        return "dead", str(exc), exc.reply, None
    except Retry as exc:
        return "retry", str(exc), exc.reply, None
    except Exception as exc:  # noqa: BLE001 - a bug in one delivery must not stop the rest
        return "retry", f"{type(exc).__name__}: {exc}", None, None
    return "delivered", None, None, None


def dispatch_due(ws: Workspace, channels: Channels, limit: int = 500,
                 now: datetime | None = None, pool: ThreadPoolExecutor | None = None
                 ) -> Counter[str]:
    """Deliver up to ``limit`` due rows, ``PARALLEL`` at a time (on ``pool`` if given: a
    caller that dispatches in a loop keeps one); returns counts by outcome."""
    now = now or utcnow()
    with ws.control.read() as conn:
        rows = outbox_store.due(conn, now, limit)
    outcomes: Counter[str] = Counter()
    if not rows:
        return outcomes
    with ThreadPoolExecutor(PARALLEL) if pool is None else nullcontext(pool) as executor:
        results = list(executor.map(lambda r: _attempt(channels, r), rows))
    finished = utcnow()
    with ws.control.write() as conn:
        for row, (outcome, error, reply, wait) in zip(rows, results, strict=True):
            attempts = row.attempts + 1
            values: dict[str, Any] = {"attempts": attempts, "last_error": error,
                                      "last_reply": reply}
            if outcome == "later":  # the channel's rate limit: no attempt counted
                values = {"attempts": row.attempts, "last_error": error,
                          "next_attempt_at": finished + timedelta(seconds=wait or 1.0)}
            elif outcome in ("delivered", "suppressed"):
                values.update(status=outcome, delivered_at=finished)
                if outcome == "delivered":
                    values["cost"] = channels.cost(row)
            elif outcome == "dead":  # refused for good: replay once the cause is fixed
                values["status"] = "dead"
            else:
                extra = json.loads(row.payload)
                if attempts >= int(extra.get("max_attempts", 8)):
                    values["status"] = outcome = "dead"
                else:
                    values["next_attempt_at"] = finished + timedelta(
                        seconds=backoff(attempts, float(extra.get("retry_seconds", 30.0))))
            outbox_store.settle(conn, row.outbox_id, values)
            outcomes[outcome] += 1
    return outcomes


def replay(ws: Workspace, ids: Iterable[int] | None = None, status: str = "dead") -> int:
    """Send rows again: the given ids (any status but held_out), or every row in ``status``.

    They go out with their original idempotency keys; returns how many were queued.
    """
    with ws.control.write() as conn:
        return outbox_store.requeue(conn, utcnow(), ids, status)


def deliveries(ws: Workspace, *, status: str | None = None, source: str | None = None,
               customer_id: str | None = None, action: str | None = None,
               event: str | None = None, since: datetime | None = None,
               until: datetime | None = None, after: int = 0, before: int | None = None,
               limit: int = 100, newest: bool = False,
               replies: bool = False) -> list[dict[str, Any]]:
    """Outbox rows, oldest first, filtered (status, source ``trigger:<key>`` or
    ``playbook:<key>``, customer, action kind, event, created in [since, until)); ``after``
    is the last outbox_id already seen, ``before`` the first one of a newer page.
    ``newest``: the last ``limit`` rows instead (still oldest first). Receivers' replies
    (``last_reply``) only with ``replies``: for admins, since a reply can be anything an
    internal service answers."""
    if status is not None and status not in STATUSES:
        raise TierwiseError(f"unknown delivery status {status!r}; expected one of "
                            f"{', '.join(STATUSES)}",
                            zh=f"未知的投递状态 {status!r}：应为 {', '.join(STATUSES)} 之一")
    if action is not None and action not in ACTIONS:
        raise TierwiseError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}",
                            zh=f"未知的动作 {action!r}：应为 {', '.join(ACTIONS)} 之一")
    if event is not None and event not in EVENT_NAMES:
        raise TierwiseError(f"unknown event {event!r}; expected one of "
                            f"{', '.join(EVENT_NAMES)}",
                            zh=f"未知的事件 {event!r}：应为 {', '.join(EVENT_NAMES)} 之一")
    zone = ws.config.zone  # a time without a zone is the workspace's local time
    since, until = (None if t is None else t if t.tzinfo else t.replace(tzinfo=zone)
                    for t in (since, until))
    with ws.control.read() as conn:
        rows = outbox_store.rows(conn, status=status, source=source, customer_id=customer_id,
                                 action=action, event=event, since=since, until=until,
                                 after=after, before=before, limit=limit, newest=newest)
    out = []
    for data in rows:
        if not replies:
            data.pop("last_reply", None)
        payload = json.loads(data.pop("payload"))
        data["event"] = payload["event"]
        data["target"] = payload["action"].get("url") or payload["action"].get("title") \
            or payload["action"].get("tag") or payload["action"]["type"]
        out.append(data)
    return out


def summary(ws: Workspace) -> dict[str, int]:
    """Outbox rows by status."""
    with ws.control.read() as conn:
        found = outbox_store.counts(conn)
    return {s: int(found.get(s, 0)) for s in STATUSES}


__all__ = ["ACTIONS", "PARALLEL", "STATUSES", "backoff", "deliveries", "dispatch_due", "replay",
           "summary"]
