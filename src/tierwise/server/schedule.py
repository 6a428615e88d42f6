"""Jobs that run on a schedule: the nightly computation and the periodic review.

``tierwise serve`` calls ``Scheduler.tick`` every ``TICK_SECONDS``; so may any process, and
``tierwise schedule run JOB`` runs one job now (for cron, systemd timers or Kubernetes
CronJobs instead of ``serve``). Each job has one due instant at a time (the latest
scheduled instant not in the future, in the workspace's time zone); a tick runs the job
when its last run was for an earlier instant, so a run missed while no server ran happens
once at the next start-up, not once per missed night. The first tick of a workspace only
records where the schedule starts (nothing ran before it, so nothing was missed).

Several servers on one workspace: a job runs under the lease ``schedule:<job>``, and the
lease holder checks again, inside the lease, whether the instant still needs a run, so a
job runs once per instant whichever server gets there first.

Runs are jobs (``jobs`` table, kind ``schedule:<job>``) with the instant they were due in
their parameters: ``tierwise schedule``, the API's jobs and ``/metrics`` show them.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tierwise.config import WorkspaceConfig, local_time
from tierwise.errors import TierwiseError
from tierwise.store import audit, jobs, leases
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

log = logging.getLogger("tierwise.schedule")

TICK_SECONDS = 30.0
#: How long a job's lease lasts; a run renews nothing, so this bounds the longest run.
LEASE_SECONDS = 4 * 3600
KIND = "schedule:"
JOBS = ("compute", "review")


@dataclass(frozen=True)
class Plan:
    """One job's schedule: ``due(now)`` is its latest instant at or before ``now``."""

    job: str
    every: str  # "daily", "monthly", "quarterly"
    at: tuple[int, int]

    def due(self, now: datetime, config: WorkspaceConfig) -> datetime:
        local = now.astimezone(config.zone)
        hour, minute = self.at
        if self.every == "daily":
            found = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if found > local:
                found = _shift_days(found, -1, config)
            return found
        month = local.month - (local.month - 1) % self.months
        found = local.replace(month=month, day=1, hour=hour, minute=minute, second=0,
                              microsecond=0)
        if found > local:
            found = _months(found, -self.months)
        return found

    def after(self, instant: datetime, config: WorkspaceConfig) -> datetime:
        """The first scheduled instant after ``instant``."""
        if self.every == "daily":
            return _shift_days(self.due(instant, config), 1, config)
        return _months(self.due(instant, config), self.months)

    @property
    def months(self) -> int:
        """Months between two runs of a monthly or quarterly job."""
        return 1 if self.every == "monthly" else 3


def _shift_days(local: datetime, days: int, config: WorkspaceConfig) -> datetime:
    """The same wall-clock time ``days`` later (right across daylight-saving changes)."""
    naive = local.replace(tzinfo=None) + timedelta(days=days)
    return naive.replace(tzinfo=config.zone)


def _months(local: datetime, months: int) -> datetime:
    index = local.year * 12 + local.month - 1 + months
    return local.replace(year=index // 12, month=index % 12 + 1)


def plans(config: WorkspaceConfig) -> dict[str, Plan]:
    """The jobs ``tierwise.toml`` switches on, with their schedules."""
    found = {}
    if config.schedule_compute != "off":
        found["compute"] = Plan("compute", "daily", local_time(config.schedule_compute)
                                or (2, 0))
    if config.schedule_review != "off":
        found["review"] = Plan("review", config.schedule_review,
                               local_time(config.schedule_review_at) or (6, 0))
    return found


# -- the jobs ----------------------------------------------------------------------------
def run_compute(ws: Workspace, due: datetime) -> dict[str, Any]:
    """Recompute every customer's values and re-evaluate every segment, as of now."""
    from tierwise.models.compute import compute
    from tierwise.segments import membership

    snap = compute(ws, utcnow())
    runs = membership.evaluate_all(ws)
    failed = {r.key: r.error for r in runs if r.error}
    if failed:
        raise TierwiseError(f"{len(failed)} segment(s) failed to evaluate: " + "; ".join(
            f"{k}: {v}" for k, v in list(failed.items())[:5]),
                            zh=f"{len(failed)} 个分群计算失败：" + "；".join(
                                f"{k}：{v}" for k, v in list(failed.items())[:5]))
    return {"customers": snap.table.num_rows,
            "segments": len(runs),
            "entered": sum(r.entered or 0 for r in runs),
            "left": sum(r.exited or 0 for r in runs)}


def review_period(every: str, due: datetime, config: WorkspaceConfig) -> str:
    """The period a review due at ``due`` covers: the month or quarter before it."""
    local = due.astimezone(config.zone) - timedelta(days=1)
    if every == "monthly":
        return f"{local.year}-{local.month:02d}"
    return f"{local.year}Q{(local.month - 1) // 3 + 1}"


def run_review(ws: Workspace, due: datetime) -> dict[str, Any]:
    """Write the review of the period before ``due`` to reports/ (HTML and PDF, in the
    workspace's language) and mail it to the subscribers."""
    from tierwise.actions.channels import Retry, send_mail
    from tierwise.services.review import review
    from tierwise.web import report

    period = review_period(plans(ws.config)["review"].every, due, ws.config)
    found = review(ws, period)
    folder = ws.root / "reports" / "reviews"
    folder.mkdir(parents=True, exist_ok=True)
    html_path = folder / f"review-{period}.html"
    pdf_path = folder / f"review-{period}.pdf"
    html_path.write_text(report.html(ws, found, ws.config.locale), "utf-8")
    pdf_path.write_bytes(report.pdf(ws, found, ws.config.locale))
    result: dict[str, Any] = {"period": period,
                              "files": [_relative(ws, html_path), _relative(ws, pdf_path)],
                              "mailed_to": 0}
    if ws.config.review_subscribers:
        message = EmailMessage()
        message["Subject"] = (f"{ws.config.name}: 定期复盘 {period}" if
                              ws.config.locale == "zh-CN" else
                              f"{ws.config.name}: review {period}")
        message["From"] = ws.config.mail_from
        message["To"] = ", ".join(ws.config.review_subscribers)
        message.set_content(f"{found.period.name} vs {found.previous.name}: see the attached "
                            "report.")
        message.add_attachment(html_path.read_bytes(), maintype="text", subtype="html",
                               filename=html_path.name)
        message.add_attachment(pdf_path.read_bytes(), maintype="application", subtype="pdf",
                               filename=pdf_path.name)
        try:
            send_mail(ws.config, message)
        except Retry as exc:
            raise TierwiseError(f"the review is in {result['files'][0]} but was not "
                                f"e-mailed: {exc}",
                                zh=f"复盘报告在 {result['files'][0]}，但没有发出邮件："
                                f"{exc}") from None
        result["mailed_to"] = len(ws.config.review_subscribers)
    return result


def _relative(ws: Workspace, path: Path) -> str:
    return path.relative_to(ws.root).as_posix()


RUNNERS: dict[str, Callable[[Workspace, datetime], dict[str, Any]]] = {
    "compute": run_compute, "review": run_review}


# -- the scheduler -----------------------------------------------------------------------
class Scheduler:
    """Runs the workspace's due jobs; ``clock`` and ``runners`` are replaceable in tests."""

    def __init__(self, ws: Workspace, *, clock: Callable[[], datetime] = utcnow,
                 runners: dict[str, Callable[[Workspace, datetime], dict[str, Any]]]
                 | None = None, holder: str | None = None) -> None:
        self.ws = ws
        self.clock = clock
        self.runners = runners or RUNNERS
        self.holder = holder or f"{socket.gethostname()}:{jobs.this_process()}"

    def tick(self) -> list[dict[str, Any]]:
        """Run every job whose due instant has no run yet; returns the runs made."""
        done = []
        for name, plan in plans(self.ws.config).items():
            now = self.clock()
            due = plan.due(now, self.ws.config)
            last = last_run(self.ws, name)
            if last is None:
                self._baseline(name, due)
            elif _due_of(last) < due:
                run = self.run(name, due)
                if run is not None:
                    done.append(run)
        return done

    def _baseline(self, name: str, due: datetime) -> None:
        """Record where the schedule starts (no run was missed before the first start)."""
        with self.ws.control.write() as conn:
            if not leases.take(conn, f"{KIND}{name}", self.holder, self.clock(), 60):
                return
            if last_run(self.ws, name, conn) is None:
                job = jobs.create(conn, f"{KIND}{name}", {"due": due.isoformat()},
                                  "system:schedule")
                # not a run: neither a success (metrics) nor a failure, and no work done
                jobs.update(conn, job, status="start", finished_at=utcnow())
            leases.release(conn, f"{KIND}{name}", self.holder)

    def run(self, name: str, due: datetime | None = None,
            actor: str = "system:schedule") -> dict[str, Any] | None:
        """Run job ``name`` for ``due`` (default: now, as an unscheduled run) under its lease;
        None when another process holds the lease or already ran it for ``due``."""
        if name not in self.runners:
            raise TierwiseError(f"no job {name!r}; the jobs are {', '.join(JOBS)}",
                                zh=f"没有任务 {name!r}；可用的任务：{', '.join(JOBS)}")
        scheduled = due is not None
        due = due or self.clock()
        lease = f"{KIND}{name}"
        with self.ws.control.write() as conn:
            if not leases.take(conn, lease, self.holder, self.clock(), LEASE_SECONDS):
                return None
            last = last_run(self.ws, name, conn)
            if scheduled and last is not None and _due_of(last) >= due:
                leases.release(conn, lease, self.holder)
                return None
            job = jobs.create(conn, f"{KIND}{name}", {"due": due.isoformat(),
                                                      "scheduled": scheduled}, actor)
            jobs.update(conn, job, status="running")
        try:
            result = self.runners[name](self.ws, due)
            outcome = {"job_id": job, "job": name, "due": due, "status": "done",
                       "result": result}
            with self.ws.control.write() as conn:
                jobs.update(conn, job, status="done", result=json.dumps(result, default=str))
                audit.append(conn, actor, f"schedule_{name}", None,
                             {"due": due.isoformat(), **result})
        except Exception as exc:  # noqa: BLE001 - recorded; the next instant runs again
            log.exception("scheduled job %s (due %s) failed", name, due.isoformat())
            outcome = {"job_id": job, "job": name, "due": due, "status": "failed",
                       "error": str(exc)}
            with self.ws.control.write() as conn:
                jobs.update(conn, job, status="failed", error=str(exc)[:2000])
        finally:
            with self.ws.control.write() as conn:
                leases.release(conn, lease, self.holder)
        return outcome


def _missed(recent: list[dict[str, Any]], due: datetime) -> bool:
    scheduled = [r for r in recent if r["params"].get("scheduled", True)]
    return bool(scheduled) and _due_of(scheduled[0]) < due


def _due_of(run: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(run["params"]["due"])


def last_run(ws: Workspace, name: str, conn: Any = None) -> dict[str, Any] | None:
    """The newest scheduled run of ``name`` (unscheduled runs from the CLI do not count)."""
    if conn is None:
        with ws.control.read() as c:
            return last_run(ws, name, c)
    for row in jobs.recent(conn, 50, kind=f"{KIND}{name}"):
        if row["params"].get("scheduled", True):
            return row
    return None


def overview(ws: Workspace, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each job: its schedule, the next run, and the last runs with their outcomes."""
    now = now or utcnow()
    found = []
    active = plans(ws.config)
    with ws.control.read() as conn:
        for name in JOBS:
            plan = active.get(name)
            recent = jobs.recent(conn, 5, kind=f"{KIND}{name}")
            found.append({
                "job": name,
                "schedule": (f"{plan.every} at {plan.at[0]:02d}:{plan.at[1]:02d} "
                             f"({ws.config.timezone})") if plan else "off",
                "next": plan.after(now, ws.config) if plan else None,
                # its latest instant has no run yet: the next tick (or start-up) runs it
                "missed": bool(plan and recent and _missed(recent, plan.due(now, ws.config))),
                "runs": [{"due": r["params"].get("due"), "status": r["status"],
                          "started": r["created_at"], "finished": r["finished_at"],
                          "result": r["result"], "error": r["error"]} for r in recent],
            })
    return found
