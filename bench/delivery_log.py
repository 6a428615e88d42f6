"""Server time of the Actions page (the delivery log) with 100,000 deliveries.

``python bench/delivery_log.py [--deliveries 100000] [--repeat 7]``

A workspace of 2,000 demo customers gets ``--deliveries`` outbox rows from two triggers and
a playbook (webhooks, tasks and tags over 120 days, with every status), written the way the
triggers write them. A signed-in client then opens the Actions page unfiltered, on the last
page back (keyset ``before``), and filtered by status, source, channel, customer and a day
window; and the API's newest page. The baseline in the same run is the same unfiltered
page on the same workspace before the deliveries were added (the showcase's few). Figures
are medians of ``--repeat`` requests after one warm-up.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, report  # noqa: E402

PASSWORD = "bench-delivery-log"
STATUSES = ("delivered", "delivered", "delivered", "pending", "dead", "suppressed",
            "held_out")


def build(root: Path, deliveries: int):  # type: ignore[no-untyped-def]
    import tierwise
    from tierwise.demo.generator import DemoSpec
    from tierwise.demo.load import load_generated, showcase
    from tierwise.store import accounts

    ws = tierwise.init(root)
    load_generated(ws, DemoSpec(customers=2_000, seed=3, end=datetime(2026, 6, 30).date()))
    showcase(ws)
    with ws.control.write() as conn:
        accounts.add_user(conn, "admin", PASSWORD, "admin")
    return ws


def fill(ws, deliveries: int) -> float:  # type: ignore[no-untyped-def]
    """Write ``deliveries`` outbox rows; returns the seconds it took."""
    import sqlalchemy as sa

    from tierwise.actions.outbox import enqueue
    from tierwise.definitions.automations import Tag, Task, Webhook

    sources = [("trigger:vip_webhook", "enter", Webhook(type="webhook",
                                                          url="https://crm.example/hook")),
               ("trigger:lapsed_tag", "exit", Tag(type="tag", tag="lapsed")),
               ("playbook:care", "playbook_step", Task(type="task", title="call"))]
    start = datetime(2026, 3, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    made, batch = 0, 0
    while made < deliveries:
        source, event, action = sources[batch % len(sources)]
        at = start + timedelta(hours=batch * 14)  # 200 batches of 500 span ~116 days
        n = min(500, deliveries - made)
        with ws.control.write() as conn:
            enqueue(conn, source, event, action,
                    [{"customer_id": f"C{(made + i) % 2000 + 1:06d}", "segment": "vip",
                      "n": made + i} for i in range(n)], at)
        made += n
        batch += 1
    with ws.control.write() as conn:  # every status, spread over the log
        cases = " ".join(f"WHEN {i} THEN '{s}'" for i, s in enumerate(STATUSES))
        conn.execute(sa.text(f"UPDATE outbox SET status = CASE outbox_id % {len(STATUSES)} "
                             f"{cases} END"))
    return time.perf_counter() - t0


def timed(client, url: str, repeat: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    answer = client.get(url)
    assert answer.status_code == 200, (url, answer.text[:300])
    times = []
    for _ in range(repeat):
        time.sleep(0.06)  # below the API's 20 requests a second per user
        t0 = time.perf_counter()
        answer = client.get(url)
        times.append(time.perf_counter() - t0)
    rows = len(re.findall(r"<tr><td>\d+</td>", answer.text)) if url.startswith("/actions") \
        else len(answer.json()["items"])
    return median(times), rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from tierwise.server.app import create_app

    with tempfile.TemporaryDirectory(prefix="tierwise-bench-log-") as folder:
        ws = build(Path(folder) / "ws", args.deliveries)

        def client():  # type: ignore[no-untyped-def]
            made = TestClient(create_app(ws))
            ok = made.post("/v1/auth/login", json={"username": "admin", "password": PASSWORD})
            made.headers["X-CSRF-Token"] = ok.json()["csrf_token"]
            return made

        base, base_rows = timed(client(), "/actions", args.repeat)
        seconds = fill(ws, args.deliveries)
        c = client()
        first_page = c.get("/v1/deliveries", params={"newest": "true", "limit": 1}).json()
        newest = first_page["items"][0]["outbox_id"]
        cases = {
            "unfiltered": "/actions",
            "last page back (before=60)": "/actions?before=60",
            "middle (before=newest/2)": f"/actions?before={newest // 2}",
            "status=dead": "/actions?status=dead",
            "source=playbook:care": "/actions?source=playbook:care",
            "channel=webhook": "/actions?action=webhook",
            "customer=C000777": "/actions?customer=C000777",
            "one day": "/actions?since=2026-03-05&until=2026-03-05",
            "status+source+channel+day": "/actions?status=delivered&source=trigger:vip_webhook"
                                         "&action=webhook&since=2026-03-02&until=2026-03-09",
            "API newest 100": "/v1/deliveries?newest=true&limit=100",
        }
        rows = [{"case": "baseline: unfiltered, before the deliveries", "seconds": round(base, 4),
                 "rows_shown": base_rows, "ratio": 1.0}]
        for name, url in cases.items():
            took, shown = timed(c, url, args.repeat)
            rows.append({"case": name, "seconds": round(took, 4), "rows_shown": shown,
                         "ratio": round(took / base, 2)})
        rows.append({"case": f"writing {args.deliveries:,} deliveries",
                     "seconds": round(seconds, 2)})
        report("delivery_log", rows)
        ws.close()


if __name__ == "__main__":
    main()
