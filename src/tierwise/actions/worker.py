"""The real-time worker that ``tierwise serve`` runs next to the API.

One process at a time does this work (a lease in the control store, renewed every few
seconds; another server process takes over within ``LEASE_SECONDS`` of the holder dying):

* the **loop** thread moves received rows to the fact store, re-evaluates the segments
  they affect for the customers they name, evaluates segments applied without an
  evaluation (new or changed definitions) for everyone, rescores leads, escalates
  tickets and moves playbook runs along. Every ``sweep_seconds`` it evaluates the
  clock-driven segments for the customers on a window's edge since the last sweep (the
  search for those customers, ``realtime.crossing``, looks them up in the facts kept in
  memory; where they are not kept it reads whole tables, on a thread of its own while the
  loop goes on; the next round evaluates what it found), checks SLA deadlines and merges
  the micro-batch files of the fact store; one clock-driven segment per round is swept
  for everyone when its turn comes (every ``full_sweep_seconds``, or every
  ``sweep_seconds`` for rules without edges). A new
  snapshot or an import by another process re-evaluates every segment;
* the **dispatcher** thread delivers the outbox;
* the **lease** thread renews the lease, apart from the loop so that a long round (the
  catch-up after a start on a large workspace) cannot let it lapse.

On start the loop re-evaluates every segment once for everyone (reason ``data_change``),
so changes made while no server ran — imports, edits — are caught up.

``tierwise serve`` runs the worker in a child process (``WorkerProcess``), so that the
API's request threads and the worker's loop do not take turns on one interpreter lock:
under a sustained 2,000 events/s that cut the answer time of ``POST /v1/events`` and the
whole path from a 2xx to the membership by more than half. Two pipes join them: the
server writes a byte to wake the loop when rows arrive (the child stops when that pipe
closes, so it never outlives its server), and the child writes its counters back twice a
second.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa
import sqlalchemy as sa

from tierwise.actions import playbooks, sla
from tierwise.actions.channels import Channels
from tierwise.actions.dispatch import PARALLEL, dispatch_due
from tierwise.models import leads
from tierwise.realtime import intake
from tierwise.segments import realtime
from tierwise.segments.membership import RunResult, evaluate_all
from tierwise.store.control import utcnow
from tierwise.store.tables import customers, leases
from tierwise.workspace import Workspace

log = logging.getLogger("tierwise.worker")
LEASE = "realtime-worker"
LEASE_SECONDS = 15.0
#: Longest sleep of the loop when nothing arrives (a post wakes it at once).
IDLE_SECONDS = 0.25
LEAD_DECAY_EVERY = 3600.0
#: Seconds between deletions of intake rows moved longer ago than ``intake_keep_hours``.
PRUNE_INTAKE_EVERY = 3600.0
#: Micro-batch files of a table are merged, in two tiers, once there are this many:
#: readers open few files however long the server runs. The micro-batches go into a chunk
#: of about CHUNK_ROWS rows; once the chunks and micro-batches at the end of a table hold
#: SMALL_FILE_ROWS rows together, they become one file that stays. Merging every few
#: seconds into one growing file of up to SMALL_FILE_ROWS rows instead rewrote each row
#: five times on average, and read it ahead as often for the in-memory facts.
COMPACT_AT_FILES = 20
CHUNK_ROWS = 25_000
#: Rounds whose durations ``Stats`` sums up.
ROUNDS_KEPT = 1000
#: A round this long is logged with the time of each of its steps.
SLOW_ROUND_SECONDS = 1.0
SMALL_FILE_ROWS = 200_000


#: Niceness of the worker's background thread on Linux. Its merges and searches have no
#: deadline; at the same priority, the rounds running beside a merge took ~70 % longer
#: (median 0.42 s against 0.25 s in a 10-minute run).
BACKGROUND_NICENESS = 10


def _yield_the_cores() -> None:
    """Lower the calling thread's priority (Linux schedules threads one by one)."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
        except OSError:  # not allowed here: merges then run at the loop's priority
            log.info("could not lower the priority of the background thread")


def try_lease(ws: Workspace, holder: str, seconds: float = LEASE_SECONDS) -> bool:
    """Take or renew the worker lease; True when ``holder`` has it."""
    now = utcnow()
    with ws.control.write() as conn:
        row = conn.execute(sa.select(leases).where(leases.c.name == LEASE)).first()
        if row is None:
            conn.execute(leases.insert().values(name=LEASE, holder=holder,
                                                expires_at=now + timedelta(seconds=seconds)))
            return True
        if row.holder != holder and row.expires_at > now:
            return False
        conn.execute(leases.update().where(leases.c.name == LEASE).values(
            holder=holder, expires_at=now + timedelta(seconds=seconds)))
        return True


def release(ws: Workspace, holder: str) -> None:
    with ws.control.write() as conn:
        conn.execute(leases.delete().where(leases.c.name == LEASE, leases.c.holder == holder))


@dataclass
class Stats:
    """What the worker did (``GET /v1/realtime``)."""

    started_at: datetime = field(default_factory=utcnow)
    holder: bool = False
    batches: int = 0
    rows_moved: int = 0
    segment_changes: int = 0
    last_batch_seconds: float = 0.0
    #: Durations of the last ``ROUNDS_KEPT`` rounds that moved rows or swept (a post waits
    #: for the round under way and the next), and how many of them swept.
    round_p50_seconds: float = 0.0
    round_p99_seconds: float = 0.0
    round_max_seconds: float = 0.0
    sweep_rounds: int = 0
    sweeps: int = 0
    last_sweep_at: datetime | None = None
    last_sweep_seconds: float = 0.0
    delivered: int = 0
    failed_attempts: int = 0
    errors: int = 0


def _updated_customers(ws: Workspace, since: datetime) -> tuple[set[str], datetime]:
    with ws.control.read() as conn:
        rows = conn.execute(sa.select(customers.c.customer_id, customers.c.updated_at).where(
            customers.c.updated_at > since)).all()
    latest = max((r.updated_at for r in rows), default=since)
    return {r.customer_id for r in rows}, latest


@dataclass(frozen=True)
class _Outside:
    """What the loop's incremental work does not see: the latest snapshot, and the latest
    import (every import is a row; only those after the last look are read)."""

    snapshot: int
    last_import: int

    def look(self, ws: Workspace) -> tuple[_Outside, bool]:
        """The state now, and whether a snapshot was computed or facts were imported other
        than through intake (the CLI, the import API) since ``self``."""
        from tierwise.store import snapshots
        from tierwise.store.tables import imports

        with ws.control.read() as conn:
            snapshot = snapshots.state(conn)[1]
            rows = conn.execute(sa.select(imports.c.import_id, imports.c.table_name,
                                          imports.c.source).where(
                imports.c.import_id > self.last_import)).all()
        now = _Outside(snapshot, max((r.import_id for r in rows), default=self.last_import))
        foreign = any(r.table_name != "customers" and not r.source.startswith("intake ")
                      for r in rows)
        return now, snapshot != self.snapshot or foreign


def _definitions_token(ws: Workspace) -> tuple[object, ...]:
    """Changes whenever a definition is saved (versions are only ever added)."""
    from tierwise.store.tables import definitions

    with ws.control.read() as conn:
        return tuple(conn.execute(sa.select(sa.func.count(), sa.func.max(
            definitions.c.created_at))).one())


def _tickets(ws: Workspace, ids: set[str]) -> list[dict[str, object]]:
    """The stored rows (times as imported, UTC) of the given tickets."""
    if not ids:
        return []
    with ws.engine.session({"tickets": ws.facts.scan("tickets")}) as session:
        session.register_arrow("_ids", pa.table({"ticket_id": pa.array(sorted(ids),
                                                                        pa.string())}))
        return session.query("SELECT ticket_id, customer_id, opened_at, closed_at FROM "
                             "tickets WHERE ticket_id IN (SELECT ticket_id FROM _ids)"
                             ).to_pylist()


class Worker:
    """The lease, loop and dispatcher threads; ``start`` and ``stop`` them with the server."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        #: Set while this process holds the lease.
        self.leased = threading.Event()
        #: Set once this process has caught up since it took the lease (others wait for
        #: the first one: at start the real-time work goes first).
        self.caught_up = threading.Event()
        self.stats = Stats()
        self._threads: list[threading.Thread] = []
        self._watermark = utcnow()
        self._last_sweep = 0.0
        self._last_decay = time.monotonic()
        self._last_prune = 0.0
        self._definitions_seen: tuple[object, ...] = ()
        self._reads: dict[str, realtime.Reads] = {}
        #: When each clock-driven segment was last swept for everyone (monotonic seconds).
        self._swept: dict[str, float] = {}
        #: The instant up to which each segment's memberships are right about the clock
        #: (its last evaluation for everyone or its last edge sweep).
        self._clock: dict[str, datetime] = {}
        self._last_edge_sweep = 0.0
        self._rounds: deque[tuple[float, bool]] = deque(maxlen=ROUNDS_KEPT)
        #: Seconds of each step of the round under way (logged when it is slow).
        self._steps: dict[str, float] = {}
        #: What the round under way carried (logged with its steps when it is slow).
        self._carried: dict[str, int] = {}
        #: The search for customers on time edges under way: (result, segments, instant).
        self._search: tuple[Future[set[str]], list[str], datetime] | None = None
        #: One thread for work that only reads, or that other readers and writers may see
        #: happen at any moment: the edge search, merging micro-batch files.
        self._background = ThreadPoolExecutor(1, thread_name_prefix="tierwise-background",
                                               initializer=_yield_the_cores)
        #: What the background thread merges with: a DuckDB of one thread (its own, so all
        #: of a merge's work stays on that yielding thread; the shared one would run it on
        #: its own threads too).
        self._background_engine = ws.engine
        if ws.engine.name == "duckdb":
            from tierwise.engines.duckdb import DuckDBEngine

            self._background_engine = DuckDBEngine(
                threads=1, memory_limit=getattr(ws.engine, "memory_limit", None))
        self._merging: Future[object] | None = None
        self._outside: _Outside | None = None

    def start(self) -> None:
        # Every evaluation of the loop is for a few customers, and it commits several times
        # a second: keep the facts it reads in memory by customer, and checkpoint the
        # SQLite log on a thread of its own (see FactStore.keep_rows and
        # ControlStore.checkpoint_in_background).
        self.ws.facts.keep_rows = self.ws.engine.name == "duckdb"
        self.ws.control.checkpoint_in_background()
        for target, name in ((self._lease_loop, "tierwise-lease"),
                             (self._loop, "tierwise-worker"),
                             (self._dispatch_loop, "tierwise-dispatcher")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._background.shutdown(wait=False, cancel_futures=True)
        if self.stats.holder:
            try:
                release(self.ws, self.holder)
            except Exception:  # noqa: BLE001 - the lease expires by itself
                log.exception("could not release the worker lease")

    def notify(self) -> None:
        """Rows were received: run a batch now instead of after the idle wait."""
        self.wake.set()

    # -- the loop ------------------------------------------------------------------------
    def _guard(self, what: str, step: Callable[[], object]) -> object:
        try:
            return step()
        except Exception:
            self.stats.errors += 1
            log.exception("%s failed; it is tried again on the next round", what)
            return None

    def _lease_loop(self) -> None:
        """Take or renew the lease every third of its life, in its own thread, so that a
        long round (catching up after a start) cannot let it lapse."""
        while not self.stop_event.is_set():
            try:
                held = try_lease(self.ws, self.holder)
            except Exception:  # noqa: BLE001
                log.exception("could not renew the worker lease")
                held = False
            self.stats.holder = held
            if held:
                self.leased.set()
            else:
                self.leased.clear()
            self.stop_event.wait(LEASE_SECONDS / 3)
        self.leased.set()  # let a waiting loop see the stop

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            if not self.stats.holder:
                # Another process works meanwhile: catch up again once the lease is back.
                self.caught_up.clear()
                self.leased.wait(LEASE_SECONDS / 3)
                continue
            if not self.caught_up.is_set():
                self._guard("catching up", self.catch_up)
                # what catching up built lives as long as the worker: out of the cyclic
                # collector's sight (after one last collection, so that no garbage is
                # kept), a full collection takes milliseconds instead of ~150 ms stolen
                # from a round every 20 s or so
                gc.collect()
                gc.freeze()
                self.caught_up.set()
            self.wake.clear()
            t0, batches = time.perf_counter(), self.stats.batches
            searched = self._guard("a real-time batch", self.run_batch)
            with self._step("time sweep"):
                swept = self._guard("the time sweep", self.sweep_step) or searched
            # not in the round that swept: no round carries both (a post waits for at most
            # the round under way and the next)
            if not swept and self._maintenance_due():
                with self._step("maintenance"):
                    self._guard("maintenance", self.run_sweep)
            if swept or self.stats.batches > batches:
                self._round(time.perf_counter() - t0, bool(swept))
            self._steps.clear()
            self._carried.clear()
            self.wake.wait(IDLE_SECONDS)

    def _maintenance_due(self) -> bool:
        """Every ``sweep_seconds``, half-way between two edge searches. The merges it starts
        on the background thread slow the round running beside them, and the round after a
        search carries the customers it found: in step (they were, both every ten
        seconds) they made that round the slowest of its ten seconds."""
        now, every = time.monotonic(), self.ws.config.sweep_seconds
        return now - self._last_sweep >= every and now - self._last_edge_sweep >= every / 2

    @contextmanager
    def _step(self, name: str) -> Iterator[None]:
        """Time one step of the round under way (``_round`` logs them when it is slow)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._steps[name] = time.perf_counter() - t0

    def _round(self, seconds: float, swept: bool) -> None:
        """Keep the durations of the last rounds that did work, for ``Stats``; say where
        the time of a slow one went."""
        self._rounds.append((seconds, swept))
        slow = seconds >= SLOW_ROUND_SECONDS
        if slow or log.isEnabledFor(logging.DEBUG):
            # at DEBUG every round, with the wall-clock instant it began (to line rounds up
            # with what a client saw)
            log.log(logging.WARNING if slow else logging.DEBUG,
                    "a round took %.3f s from %.3f (%s; %s)", seconds, time.time() - seconds,
                    ", ".join(f"{name} {value:.3f} s" for name, value in self._steps.items()),
                    ", ".join(f"{name} {value}" for name, value in self._carried.items()))
        ordered = sorted(s for s, _ in self._rounds)
        stats = self.stats
        stats.round_p50_seconds = round(ordered[len(ordered) // 2], 4)
        stats.round_p99_seconds = round(ordered[min(len(ordered) - 1,
                                                    int(len(ordered) * 0.99))], 4)
        stats.round_max_seconds = round(ordered[-1], 4)
        stats.sweep_rounds = sum(1 for _, w in self._rounds if w)

    def catch_up(self) -> None:
        self._watermark = as_of = utcnow()
        self._outside = _Outside(0, 0).look(self.ws)[0]
        self._note_full(evaluate_all(self.ws, as_of))
        leads.update(self.ws)
        self._warm()

    def _warm(self) -> None:
        """Fill the in-memory copies the micro-batches use before reporting caught up: the
        key index of each intake table and the facts by customer with the columns the
        rules and the edge searches read (one evaluation of every segment for one
        customer, one search). Built by the first micro-batch instead, they made it take
        ~10 s on 2.8M events, and every row posted meanwhile waited for it."""
        ws = self.ws
        if ws.engine.name != "duckdb":
            return
        for table in intake.KEYS:
            ws.facts.key_index(table)
            ws.facts.follow(ws.engine, table)
        with ws.control.read() as conn:
            one = conn.execute(sa.select(customers.c.customer_id).limit(1)).scalar()
        if one is not None:
            evaluate_all(ws, utcnow(), only=[one], reason="time")
        # the columns the edge searches read (the rules read them too; this makes sure)
        reads = realtime.segment_reads(ws)
        edged = [k for k, r in reads.items() if r.on_edges]
        if edged and ws.facts.keep_rows:
            now = utcnow()
            realtime.crossing(ws, realtime.edges_of(edged, reads), now, now, in_memory=True)

    def _note_full(self, results: list[RunResult]) -> list[RunResult]:
        """Remember that these segments were evaluated for everyone at their as_of."""
        for r in results:
            if r.error is None:
                self._clock[r.key] = r.as_of
        return results

    def _refresh_definitions(self) -> list[RunResult]:
        """After a definition is saved: what rules read again, and a first evaluation for
        everyone of segments applied without one."""
        token = _definitions_token(self.ws)
        if token == self._definitions_seen:
            return []
        self._reads = realtime.segment_reads(self.ws)
        fresh = realtime.unevaluated(self.ws, self._reads)
        self._definitions_seen = token
        self._clock = {k: v for k, v in self._clock.items() if k in self._reads}
        return self._note_full(evaluate_all(self.ws, keys=fresh)) if fresh else []

    def _refresh_outside(self) -> list[RunResult]:
        """After a compute run or an import by another process: every segment, for
        everyone (what a snapshot or an import changed is not known here)."""
        if self._outside is None:  # the first look (catch-up takes it, unless it failed)
            self._outside = _Outside(0, 0).look(self.ws)[0]
            return []
        self._outside, changed = self._outside.look(self.ws)
        return self._note_full(evaluate_all(self.ws, utcnow())) if changed else []

    def sweep_step(self) -> bool:
        """The clock's changes. Every ``sweep_seconds``: start the search for the customers
        on the edges of the segments with edges since each was last right about the clock
        (the next ``run_batch`` after it ends evaluates them). Each round at most one
        segment for everyone whose turn has come: every ``sweep_seconds`` for rules without
        edges (or not evaluated yet by this process), every ``full_sweep_seconds`` for the
        others, so that nothing the edges miss stays wrong for long. True when it swept a
        segment for everyone."""
        config = self.ws.config
        now = time.monotonic()
        swept = False
        if self._search is None and now - self._last_edge_sweep >= config.sweep_seconds:
            self._last_edge_sweep = now
            keys = [k for k, r in self._reads.items() if r.on_edges and k in self._clock]
            if keys:
                self._search_edges(keys)
        due = []
        for key, read in self._reads.items():
            if not read.timed:
                continue
            edged = read.on_edges and key in self._clock
            every = config.full_sweep_seconds if edged else config.sweep_seconds
            last = self._swept.setdefault(key, now) if edged else self._swept.get(key, 0.0)
            if now - last >= every:
                due.append((last, key))
        if not due or swept:
            return swept
        key = min(due)[1]
        self._swept[key] = now
        t0 = time.perf_counter()
        results = self._note_full(evaluate_all(self.ws, utcnow(), [key], reason="time"))
        self._count_sweep(results, time.perf_counter() - t0)
        return True

    def _search_edges(self, keys: list[str]) -> None:
        """Look for the customers on the edges of ``keys`` since each was last right about
        the clock; the next ``run_batch`` evaluates what it found (``_searched``). With the
        facts kept in memory the search is a few binary searches (on the loop: it brings
        the copies up to date, which only the loop may do). Without, it reads whole tables
        (0.1 s and more) on the background thread while the loop goes on."""
        as_of = utcnow()
        since = min(self._clock[k] for k in keys)
        edges = realtime.edges_of(keys, self._reads)
        future: Future[set[str]]
        if self.ws.facts.keep_rows:
            future = Future()
            try:
                future.set_result(realtime.crossing(self.ws, edges, since, as_of,
                                                    in_memory=True))
            except Exception as exc:  # noqa: BLE001 - reported like a failed search
                future.set_exception(exc)
        else:
            future = self._background.submit(realtime.crossing, self.ws, edges, since,
                                              as_of)
        self._search = (future, keys, as_of)

    def _searched(self) -> tuple[list[str], set[str], datetime] | None:
        """The finished edge search, if one is: its segments (those still clock-driven),
        the customers it found and the instant it looked at."""
        if self._search is None or not self._search[0].done():
            return None
        future, keys, searched_at = self._search
        self._search = None
        try:
            customers = future.result()
        except Exception:  # noqa: BLE001 - the next sweep searches the same span again
            self.stats.errors += 1
            log.exception("the search for customers on time edges failed")
            return None
        keys = [k for k in keys if k in self._clock and (r := self._reads.get(k)) is not None
                and r.on_edges]
        return keys, customers, searched_at

    def _count_sweep(self, results: list[RunResult], seconds: float) -> None:
        self.stats.sweeps += 1
        self.stats.last_sweep_seconds = seconds
        self.stats.last_sweep_at = utcnow()
        self.stats.segment_changes += sum((r.entered or 0) + (r.exited or 0) for r in results)

    def run_batch(self) -> bool:
        """Move received rows, evaluate what they (and a finished edge search) affect;
        True when an edge search's customers were evaluated."""
        t0 = time.perf_counter()
        ws = self.ws
        with self._step("flush"):
            moved = intake.flush(ws)
        # the customers an edge search found join this round's evaluation: one pass (its
        # fixed cost paid once) instead of a round of their own
        searched = self._searched()
        changes: dict[str, set[str]] = dict(moved.customers)
        updated, self._watermark = _updated_customers(ws, self._watermark)
        if updated:
            changes["customers"] = updated
        if moved.customers.get("events") or updated:
            touched = set(moved.customers.get("events", ())) | updated
            changes["leads"] = leads.update(ws, touched).changed
        with self._step("outside changes"):
            results = self._refresh_definitions() + self._refresh_outside()
        self._carried.update(rows=sum(moved.moved.values()), customers=len(
            set().union(*changes.values())), edge_customers=len(searched[1]) if searched else 0,
            # work on the background thread meanwhile (it shares the cores)
            searching=int(self._search is not None),
            merging=int(self._merging is not None and not self._merging.done()))
        with self._step("evaluate"):
            clock = searched[:2] if searched and searched[0] and searched[1] else None
            if any(changes.values()) or clock:
                results += realtime.evaluate_changed(ws, changes, read_by=self._reads,
                                                     clock=clock)
        if searched:
            failed = {r.key for r in results if r.error}
            for key in searched[0]:
                if key not in failed:
                    self._clock[key] = max(self._clock[key], searched[2])
            # its changes count with the batch's below
            self._count_sweep([], self._steps.get("evaluate", 0.0))
        with self._step("tickets and playbooks"):
            if moved.ticket_ids:
                sla.on_tickets(ws, _tickets(ws, moved.ticket_ids))
            playbooks.advance(ws)
        if moved or results:
            self.stats.batches += 1
            self.stats.rows_moved += sum(moved.moved.values())
            self.stats.segment_changes += sum((r.entered or 0) + (r.exited or 0)
                                              for r in results)
            self.stats.last_batch_seconds = time.perf_counter() - t0
        failed_runs = [r for r in results if r.error]
        if failed_runs:
            log.error("segments failed in a real-time batch: %s",
                      "; ".join(f"{r.key}: {r.error}" for r in failed_runs))
        return searched is not None

    def run_sweep(self) -> None:
        """Every ``sweep_seconds``: SLA deadlines, merging micro-batch files; hourly, lead
        decay and the deletion of intake rows moved long ago."""
        self._last_sweep = time.monotonic()
        sla.check(self.ws)
        if self._merging is None or self._merging.done():
            # on the background thread: merging rewrites files (0.1 s and more), and readers
            # see the table before or after it, the same rows either way
            self._merging = self._background.submit(self._guard, "merging micro-batch files",
                                                    self.compact)
        if time.monotonic() - self._last_decay >= LEAD_DECAY_EVERY:
            self._last_decay = time.monotonic()
            decayed = leads.update(self.ws).changed
            if decayed:
                realtime.evaluate_changed(self.ws, {"leads": decayed}, read_by=self._reads)
        if time.monotonic() - self._last_prune >= PRUNE_INTAKE_EVERY:
            self._last_prune = time.monotonic()
            intake.prune(self.ws, self.ws.config.intake_keep_hours)
            # files abandoned by a crash (merges delete only what they replaced)
            self._background.submit(self._guard, "deleting stray fact files",
                                    self.ws.facts.collect_garbage)

    def compact(self) -> None:
        """Merge the micro-batch files of each table, in two tiers (see
        ``COMPACT_AT_FILES``). The in-memory copies the loop uses need not read a merged
        file in the loop (up to ``SMALL_FILE_ROWS`` rows; reading one in a round made it
        the slowest of its ten seconds): the key index knows a merge of files it holds, and
        the facts by customer read a merged file here before it is published. What either
        could not take that way (redirects changed meanwhile) is read ahead here too; the
        loop's next refresh installs it (only the loop changes the copies: its scans decide
        which files count)."""
        facts, engine = self.ws.facts, self._background_engine
        merged = []
        for table in intake.KEYS:
            replaced, written = facts.compact(engine, table, min_files=2,
                                              small_rows=SMALL_FILE_ROWS,
                                              min_rows=SMALL_FILE_ROWS)
            if written == replaced:  # not that many rows yet: micro-batches into a chunk
                replaced, written = facts.compact(engine, table, min_files=COMPACT_AT_FILES,
                                                  small_rows=CHUNK_ROWS)
            if written < replaced:
                merged.append(table)
        if merged:  # what merges replaced long enough ago (strays: hourly, run_sweep)
            facts.collect_garbage(strays=False)
        for table in merged:
            facts.follow(engine, table, ahead=True)

    # -- the dispatcher ------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        channels = Channels(self.ws)
        pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="tierwise-delivery")
        try:
            while not self.stop_event.is_set():
                if not self.stats.holder:
                    self.stop_event.wait(1.0)
                    continue
                try:
                    outcome = dispatch_due(self.ws, channels, pool=pool)
                except Exception:
                    self.stats.errors += 1
                    log.exception("delivering the outbox failed; retried in a second")
                    outcome = None
                if outcome:
                    self.stats.delivered += outcome.get("delivered", 0)
                    self.stats.failed_attempts += outcome.get("retry", 0) + \
                        outcome.get("dead", 0)
                else:
                    self.stop_event.wait(0.2)
        finally:
            pool.shutdown(wait=True)
            channels.close()


class WorkerProcess:
    """The worker in a child process (``tierwise worker --wake-fd … --status-fd …``), with
    the same face as ``Worker``: ``start``, ``stop``, ``notify``, ``stats``, ``caught_up``."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.stats = Stats()
        self.caught_up = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None
        self._wake: int | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        wake_read, wake_write = os.pipe()
        status_read, status_write = os.pipe()
        os.set_blocking(wake_write, False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tierwise.cli.main", "worker", "-w", str(self.ws.root),
             "--wake-fd", str(wake_read), "--status-fd", str(status_write)],
            pass_fds=(wake_read, status_write), stdout=subprocess.DEVNULL)
        os.close(wake_read)
        os.close(status_write)
        self._wake = wake_write
        self._reader = threading.Thread(target=self._read_status, args=(status_read,),
                                        name="tierwise-worker-status", daemon=True)
        self._reader.start()

    def _read_status(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            for line in pipe:
                try:
                    self._take(json.loads(line))
                except (ValueError, TypeError):
                    log.warning("unreadable worker status: %r", line[:200])

    def _take(self, status: dict[str, object]) -> None:
        for name, value in status.items():
            if name in ("started_at", "last_sweep_at") and isinstance(value, str):
                value = datetime.fromisoformat(value)
            if hasattr(self.stats, name):
                setattr(self.stats, name, value)
        if status.get("caught_up"):
            self.caught_up.set()
        else:
            self.caught_up.clear()

    def notify(self) -> None:
        if self._wake is None:
            return
        try:
            os.write(self._wake, b"!")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups the loop has not read yet: awake anyway
        except OSError:
            log.warning("the worker process is gone; `tierwise serve` needs a restart")

    def stop(self, timeout: float = 10.0) -> None:
        """Close the wake pipe (the child stops at the end of its round) and wait."""
        if self._wake is not None:
            os.close(self._wake)
            self._wake = None
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._reader is not None:
            self._reader.join(2)


def serve_child(ws: Workspace, wake_fd: int, status_fd: int) -> Worker:
    """The child's side of ``WorkerProcess``: run a worker until the wake pipe closes,
    reporting its counters on the status pipe. Returns the stopped worker."""
    # Ctrl-C in a terminal reaches the whole process group: the server stops this process
    # by closing the pipe, after its own shutdown
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = Worker(ws)
    done = threading.Event()

    def wakes() -> None:
        with os.fdopen(wake_fd, "rb", buffering=0) as pipe:
            while pipe.read(4096):
                worker.notify()
        done.set()  # the server is gone or stopping

    threading.Thread(target=wakes, name="tierwise-wake", daemon=True).start()
    worker.start()
    with os.fdopen(status_fd, "w", buffering=1) as status:
        try:
            while not done.wait(0.5):
                status.write(json.dumps({**vars(worker.stats),
                                         "caught_up": worker.caught_up.is_set()},
                                        default=str) + "\n")
        except OSError:  # the server is gone
            pass
        finally:
            worker.stop()
    return worker


__all__ = ["Stats", "Worker", "WorkerProcess", "release", "serve_child", "try_lease"]
