"""What operators watch: Prometheus ``/metrics``, liveness and readiness, JSON logs.

``/metrics`` (permission ``metrics:read``: give Prometheus an API key, ``tierwise keys create
prometheus --role viewer --scope metrics:read``, as a bearer token) is computed at each
scrape from the control store, which every server process shares, and from the real-time
worker's counters; so any process of ``serve --workers N`` answers the same. Metric names
follow Prometheus' conventions (``_total`` for counters, base units).

``/health/live`` answers while the process serves requests; ``/health/ready`` (for a load
balancer or Kubernetes) also checks that the control store answers and the real-time worker
runs, and is 503 with the failing check otherwise. Neither needs authentication nor shows
anything but the checks' names and outcomes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tierwise.store import metrics as metric_store
from tierwise.store.control import utcnow
from tierwise.web.auth import Principal, require

router = APIRouter()


class _Collector:
    """Reads the figures when Prometheus scrapes."""

    def __init__(self, request: Request) -> None:
        self.app = request.app

    def collect(self) -> Iterator[Metric]:
        ws = self.app.state.ws
        started = time.perf_counter()
        with ws.control.read() as conn:
            found = metric_store.figures(conn)
        stats = self.app.state.worker.stats

        def counter(name: str, doc: str, value: float) -> Metric:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            return family

        def gauge(name: str, doc: str, value: float | None = None,
                  labels: list[str] | None = None,
                  values: dict[tuple[str, ...], float] | None = None) -> Metric:
            family = GaugeMetricFamily(name, doc, labels=labels)
            if values is None:
                family.add_metric([], value or 0.0)
            else:
                for key, v in sorted(values.items()):
                    family.add_metric(list(key), v)
            return family

        yield counter("tierwise_intake_rows_received", "Rows received by the real-time "
                      "intake (events, orders, …) since the workspace began",
                      found["intake_received"])
        yield gauge("tierwise_intake_rows_pending", "Rows received and not yet moved to the "
                    "fact store", labels=["table"],
                    values={(t,): n for t, n in found["intake_pending"].items()})
        yield counter("tierwise_worker_batches", "Micro-batches the real-time worker ran "
                      "(since this server started)", stats.batches)
        yield counter("tierwise_worker_rows_moved", "Rows the worker moved to the fact "
                      "store", stats.rows_moved)
        yield counter("tierwise_worker_rows_handed", "Received rows the worker handed to "
                      "another real-time partition (their owner changed)", stats.rows_handed)
        yield counter("tierwise_membership_changes", "Segment entries and exits the worker "
                      "recorded", stats.segment_changes)
        yield counter("tierwise_worker_sweeps", "Clock sweeps (time-window edges)",
                      stats.sweeps)
        yield counter("tierwise_worker_errors", "Worker steps that failed", stats.errors)
        rounds = GaugeMetricFamily("tierwise_worker_round_seconds", "Duration of the "
                                   "worker's recent rounds (last 1,000), by quantile",
                                   labels=["quantile"])
        for q, v in (("0.5", stats.round_p50_seconds), ("0.99", stats.round_p99_seconds),
                     ("1", stats.round_max_seconds)):
            rounds.add_metric([q], v)
        yield rounds
        yield gauge("tierwise_worker_holder", "1 when this server's worker holds the "
                    "workspace's worker lease (with realtime_partitions, one partition's)",
                    1.0 if stats.holder else 0.0)
        yield gauge("tierwise_deliveries", "Outbox rows by action and status",
                    labels=["action", "status"],
                    values={k: float(n) for k, n in found["deliveries"].items()})
        backlog = sum(n for (_, s), n in found["deliveries"].items() if s == "pending")
        yield gauge("tierwise_outbox_backlog", "Deliveries waiting to be sent", backlog)
        oldest = found["oldest_pending"]
        yield gauge("tierwise_outbox_oldest_pending_seconds", "Age of the oldest delivery "
                    "waiting", (utcnow() - oldest).total_seconds() if oldest else 0.0)
        yield gauge("tierwise_import_rows", "Rows read by finished imports, by table",
                    labels=["table"],
                    values={(t,): float(r) for t, (r, _) in found["import_rows"].items()})
        yield gauge("tierwise_imports", "Finished imports, by table", labels=["table"],
                    values={(t,): float(n) for t, (_, n) in found["import_rows"].items()})
        yield gauge("tierwise_job_runs", "Jobs (imports, computations, scheduled jobs) by "
                    "kind and outcome", labels=["kind", "status"],
                    values={k: float(n) for k, n in found["job_runs"].items()})
        yield gauge("tierwise_job_last_success_timestamp_seconds", "When each kind of job "
                    "last finished well (Unix time)", labels=["kind"],
                    values={(k,): t.timestamp() for k, t in found["job_last_success"].items()
                            if t is not None})
        yield gauge("tierwise_segment_members", "Members of each segment", labels=["segment"],
                    values={(k,): float(n) for k, n in found["segment_members"].items()})
        yield gauge("tierwise_metrics_scrape_seconds", "Time this scrape's queries took",
                    time.perf_counter() - started)


@router.get("/metrics", summary="Prometheus metrics (permission metrics:read)",
            tags=["health"], response_class=Response)
def metrics(request: Request, principal: Principal = require("metrics:read")) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(request))  # type: ignore[arg-type]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/health/live", summary="Liveness: the process answers (no authentication)",
            tags=["health"])
def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready", summary="Readiness: control store and worker (no "
            "authentication)", tags=["health"])
def ready(request: Request, response: Response) -> dict[str, Any]:
    checks = {"control_store": "ok", "worker": "ok"}
    try:
        with request.app.state.ws.control.read() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["control_store"] = f"failed: {type(exc).__name__}"
    if not request.app.state.worker.alive():
        checks["worker"] = "not running"
    ok = all(v == "ok" for v in checks.values())
    response.status_code = 200 if ok else 503
    return {"status": "ok" if ok else "unavailable", "checks": checks}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
