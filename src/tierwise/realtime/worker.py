"""The real-time worker that ``tierwise serve`` runs next to the API.

One process at a time does this work (a lease in the control store, renewed every few
seconds; another server process takes over within ``LEASE_SECONDS`` of the holder dying):

* the **loop** thread moves received rows to the fact store, re-evaluates the segments
  they affect for the customers they name, evaluates segments applied without an
  evaluation (new or changed definitions) for everyone, rescores leads, escalates
  tickets and moves playbook runs along. Every ``sweep_seconds`` it evaluates the
  clock-driven segments for the customers on a window's edge since the last sweep (the
  search for those customers, ``incremental.crossing``, looks them up in the facts kept in
  memory; where they are not kept it reads whole tables, on a thread of its own while the
  loop goes on; the next round evaluates what it found), checks SLA deadlines and merges
  the micro-batch files of the fact store (the search also lists who crosses an edge
  before the next one, and when: those customers are evaluated in the first round after
  their instant, ``_timers``); one clock-driven segment per round is swept
  for everyone when its turn comes (every ``full_sweep_seconds``, or every
  ``sweep_seconds`` for rules without edges). A new
  snapshot or an import by another process re-evaluates every segment;
* the **dispatcher** thread delivers the outbox;
* the **lease** thread renews the lease, apart from the loop so that a long round (the
  catch-up after a start on a large workspace) cannot let it lapse.

On start the loop re-evaluates every segment once for everyone (reason ``data_change``),
so changes made while no server ran — imports, edits — are caught up.

The server runs it in a child process (``realtime.process``).
"""

from __future__ import annotations

import gc
import heapq
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta

import pyarrow as pa

from tierwise.actions import playbooks, sla
from tierwise.actions.channels import Channels
from tierwise.actions.dispatch import PARALLEL, dispatch_due
from tierwise.definitions.partitions import Partition
from tierwise.models import leads
from tierwise.realtime import compaction, intake
from tierwise.realtime.compaction import yield_the_cores
from tierwise.realtime.outside import Outside, definitions_token, updated_customers
from tierwise.realtime.stats import ROUNDS_KEPT, Stats
from tierwise.segments import catalog as defs
from tierwise.segments import incremental
from tierwise.segments.membership import RunResult, evaluate_all
from tierwise.store import customers as customer_store
from tierwise.store import leases, versions
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

log = logging.getLogger("tierwise.worker")
LEASE = "realtime-worker"
LEASE_SECONDS = 15.0
#: Longest sleep of the loop when nothing arrives (a post wakes it at once).
IDLE_SECONDS = 0.25
LEAD_DECAY_EVERY = 3600.0
#: Seconds between deletions of intake rows moved longer ago than ``intake_keep_hours``.
PRUNE_INTAKE_EVERY = 3600.0
#: A round this long is logged with the time of each of its steps.
SLOW_ROUND_SECONDS = 1.0


def lease_name(part: Partition) -> str:
    """The lease of a partition (``LEASE`` itself for the whole of the customers)."""
    return LEASE if part.whole else f"{LEASE}:{part.index}/{part.count}"


def try_lease(ws: Workspace, holder: str, seconds: float = LEASE_SECONDS,
              part: Partition | None = None) -> bool:
    """Take or renew the worker lease (of ``part``); True when ``holder`` has it."""
    with ws.control.write() as conn:
        return leases.take(conn, lease_name(part or Partition()), holder, utcnow(), seconds)


def release(ws: Workspace, holder: str, part: Partition | None = None) -> None:
    with ws.control.write() as conn:
        leases.release(conn, lease_name(part or Partition()), holder)


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
        self._reads: dict[str, incremental.Reads] = {}
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
        #: Customers whose value crosses a time edge before the next search, by the instant
        #: it does (a heap): each is evaluated in the first round after its instant.
        self._timers: list[tuple[datetime, str]] = []
        #: One thread for work that only reads, or that other readers and writers may see
        #: happen at any moment: the edge search, merging micro-batch files.
        self._background = ThreadPoolExecutor(1, thread_name_prefix="tierwise-background",
                                               initializer=yield_the_cores)
        #: What the background thread merges with.
        self._background_engine = ws.engine.for_background()
        self._merging: Future[object] | None = None
        self._outside: Outside | None = None
        #: The customers this worker owns (``realtime_partitions``; set with the lease).
        self.part = Partition(0, ws.config.realtime_partitions)
        #: The applied version of each segment as this worker last evaluated it for all of
        #: its customers (partitioned planes: which definitions are new to this worker).
        self._versions: dict[str, int] = {}
        #: This partition's customers, and what they were read for (``_everyone``).
        self._partition_kept: tuple[tuple[object, ...], list[str]] | None = None

    def start(self) -> None:
        # Every evaluation of the loop is for a few customers, and it commits several times
        # a second: keep the facts it reads in memory by customer, and checkpoint the
        # SQLite log on a thread of its own (see FactStore.keep_rows and
        # ControlStore.checkpoint_in_background).
        self.ws.facts.keep_rows = self.ws.engine.in_process
        self.ws.control.checkpoint_in_background()
        for target, name in ((self._lease_loop, "tierwise-lease"),
                             (self._loop, "tierwise-worker"),
                             (self._dispatch_loop, "tierwise-dispatcher")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def alive(self) -> bool:
        """Whether every thread of the worker still runs (false before ``start``)."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._background.shutdown(wait=False, cancel_futures=True)
        if self.stats.holder:
            try:
                release(self.ws, self.holder, self.part)
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
                held = self._take_lease()
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

    def _take_lease(self) -> bool:
        """Renew this worker's partition, or take the first partition nobody holds (a
        process beyond ``realtime_partitions`` waits as a spare, and takes over a partition
        whose worker stopped within ``LEASE_SECONDS``)."""
        count = self.part.count
        for index in [self.part.index, *(i for i in range(count) if i != self.part.index)]:
            part = Partition(index, count)
            if try_lease(self.ws, self.holder, part=part):
                if part != self.part:  # the loop catches up for its new customers
                    self.caught_up.clear()
                    self.part = part
                self.stats.partition = "" if part.whole else str(part)
                return True
        return False

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
                # caught up on every core; the rounds' small queries on one thread (the
                # same work in ~10 % less CPU, and no slower: bench/realtime_batch.py)
                self.ws.engine.limit_threads(1)
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
            worked = self.stats.batches > batches
            if swept or worked:
                self._round(time.perf_counter() - t0, bool(swept))
            self._steps.clear()
            self._carried.clear()
            if worked:
                # under steady load rows gather for the next round instead of each post
                # starting one (a round's fixed cost is most of a small round's)
                self.stop_event.wait(max(0.0, self.ws.config.realtime_round_seconds
                                         - (time.perf_counter() - t0)))
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
        self.stats.take_rounds(self._rounds)

    def catch_up(self) -> None:
        self._watermark = as_of = utcnow()
        self._outside = Outside(0, 0).look(self.ws)[0]
        self._versions = self._applied_versions()
        self._evaluate_everyone(as_of)
        leads.update(self.ws, self._everyone())
        self._warm()

    # -- the partition -------------------------------------------------------------------
    def _everyone(self) -> list[str] | None:
        """The customers of this worker's partition (None: all of them, one worker). Kept
        while the customers' count and latest change stay the same (a merge or a new
        account changes one of them): every sweep of a segment asks, and reading every
        customer's account each time costs a second at a million customers."""
        if self.part.whole:
            return None
        with self.ws.control.read() as conn:
            key = (self.part, customer_store.state(conn))
            if self._partition_kept is None or self._partition_kept[0] != key:
                keys = customer_store.owner_keys(conn)
                self._partition_kept = (key, sorted(c for c, owner in keys.items()
                                                    if self.part.owns(owner)))
        return self._partition_kept[1]

    def _mine(self, ids: Collection[str]) -> set[str]:
        """Those of ``ids`` this worker's partition owns."""
        if self.part.whole or not ids:
            return set(ids)
        with self.ws.control.read() as conn:
            return self.part.mine(ids, customer_store.owner_keys(conn, sorted(ids)))

    def _evaluate_everyone(self, as_of: datetime | None = None,
                           keys: Collection[str] | None = None,
                           reason: str | None = None) -> list[RunResult]:
        """``evaluate_all`` for every customer of this worker's partition, remembered as
        evaluated for everyone at its as_of (``_note_full``)."""
        only = self._everyone()
        if only is not None and not only:  # a partition with nobody in it yet
            return []
        return self._note_full(evaluate_all(self.ws, as_of or utcnow(), keys, only=only,
                                            reason=reason))

    def _applied_versions(self) -> dict[str, int]:
        with self.ws.control.read() as conn:
            return versions.latest_versions(conn, defs.KIND)

    def _warm(self) -> None:
        """Fill the in-memory copies the micro-batches use before reporting caught up: the
        key index of each intake table and the facts by customer with the columns the
        rules and the edge searches read (one evaluation of every segment for one
        customer, one search). Built by the first micro-batch instead, they made it take
        ~10 s on 2.8M events, and every row posted meanwhile waited for it."""
        ws = self.ws
        if not ws.engine.in_process:
            return
        for table in intake.KEYS:
            ws.facts.key_index(table)
            ws.facts.follow(ws.engine, table)
        with ws.control.read() as conn:
            one = customer_store.any_id(conn)
        if one is not None:
            evaluate_all(ws, utcnow(), only=[one], reason="time")
        # the columns the edge searches read (the rules read them too; this makes sure)
        reads = incremental.segment_reads(ws)
        edged = [k for k, r in reads.items() if r.on_edges]
        if edged and ws.facts.keep_rows:
            now = utcnow()
            incremental.crossing(ws, incremental.edges_of(edged, reads), now, now, in_memory=True)

    def _note_full(self, results: list[RunResult]) -> list[RunResult]:
        """Remember that these segments were evaluated for everyone at their as_of."""
        for r in results:
            if r.error is None:
                self._clock[r.key] = r.as_of
        return results

    def _refresh_definitions(self) -> list[RunResult]:
        """After a definition is saved: what rules read again, and a first evaluation for
        everyone of segments applied without one."""
        token = definitions_token(self.ws)
        if token == self._definitions_seen:
            return []
        self._reads = incremental.segment_reads(self.ws)
        self._definitions_seen = token
        self._clock = {k: v for k, v in self._clock.items() if k in self._reads}
        if self.part.whole:
            fresh = incremental.unevaluated(self.ws, self._reads)
            return self._note_full(evaluate_all(self.ws, keys=fresh)) if fresh else []
        # A partition cannot go by the segments' runs: another partition's run of the new
        # version says nothing about this one's customers. What this worker evaluated last
        # says; a changed rule is recorded as one (the other partition's run may carry
        # the new version already).
        seen, self._versions = self._versions, self._applied_versions()
        fresh = [k for k in self._reads if seen.get(k) != self._versions.get(k)]
        changed = [k for k in fresh if k in seen]
        new = [k for k in fresh if k not in seen]
        return ((self._evaluate_everyone(keys=changed, reason="rule_change") if changed
                 else []) + (self._evaluate_everyone(keys=new) if new else []))

    def _refresh_outside(self) -> list[RunResult]:
        """After a compute run or an import by another process: every segment, for
        everyone (what a snapshot or an import changed is not known here)."""
        if self._outside is None:  # the first look (catch-up takes it, unless it failed)
            self._outside = Outside(0, 0).look(self.ws)[0]
            return []
        self._outside, changed = self._outside.look(self.ws)
        return self._evaluate_everyone() if changed else []

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
            keys = self._edged_keys()
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
        results = self._evaluate_everyone(keys=[key], reason="time")
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
        edges = incremental.edges_of(keys, self._reads)
        future: Future[set[str]]
        if self.ws.facts.keep_rows:
            future = Future()
            try:
                future.set_result(self._mine(incremental.crossing(self.ws, edges, since, as_of,
                                                              in_memory=True)))
                # and who crosses before the next search, each at its own instant
                ahead = as_of + timedelta(seconds=self.ws.config.sweep_seconds + 1)
                timers = incremental.upcoming(self.ws, edges, as_of, ahead)
                mine = self._mine({c for _, c in timers})
                for timer in timers:
                    if timer[1] in mine:
                        heapq.heappush(self._timers, timer)
            except Exception as exc:  # noqa: BLE001 - reported like a failed search
                future.set_exception(exc)
        else:
            future = self._background.submit(
                lambda: self._mine(incremental.crossing(self.ws, edges, since, as_of)))
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

    def _edged_keys(self) -> list[str]:
        """The clock-driven segments whose changes the edges find."""
        return [k for k, r in self._reads.items() if r.on_edges and k in self._clock]

    def _due_timers(self) -> set[str]:
        """The customers whose timers are due (taken off the heap)."""
        now, due = utcnow(), set()
        while self._timers and self._timers[0][0] <= now:
            due.add(heapq.heappop(self._timers)[1])
        return due

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
            moved = intake.flush(ws, part=self.part)
        # the customers an edge search found join this round's evaluation: one pass (its
        # fixed cost paid once) instead of a round of their own
        searched = self._searched()
        changes: dict[str, set[str]] = dict(moved.customers)
        updated, self._watermark = updated_customers(ws, self._watermark)
        updated = self._mine(updated)
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
            due = self._due_timers()
            if due:  # crossed an edge since the last round: evaluated now, not at a sweep
                clock = (sorted(set(self._edged_keys()) | set(clock[0] if clock else ())),
                         due | set(clock[1] if clock else ()))
            if any(changes.values()) or clock:
                results += incremental.evaluate_changed(ws, changes, read_by=self._reads,
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
            if self.part.coordinator:
                playbooks.advance(ws)
        if moved or results:
            self.stats.batches += 1
            self.stats.rows_moved += sum(moved.moved.values())
            self.stats.rows_handed += moved.handed
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
        if self.part.coordinator:
            self._coordinate()
        if time.monotonic() - self._last_decay >= LEAD_DECAY_EVERY:
            self._last_decay = time.monotonic()
            decayed = leads.update(self.ws, self._everyone()).changed
            if decayed:
                incremental.evaluate_changed(self.ws, {"leads": decayed}, read_by=self._reads)

    def _coordinate(self) -> None:
        """What is not per customer, done by one partition: SLA deadlines, merging files,
        pruning the intake (and, in ``_dispatch_loop``, deliveries)."""
        sla.check(self.ws)
        if self._merging is None or self._merging.done():
            # on the background thread: merging rewrites files (0.1 s and more), and readers
            # see the table before or after it, the same rows either way
            self._merging = self._background.submit(self._guard, "merging micro-batch files",
                                                    self.compact)
        if time.monotonic() - self._last_prune >= PRUNE_INTAKE_EVERY:
            self._last_prune = time.monotonic()
            intake.prune(self.ws, self.ws.config.intake_keep_hours)
            # files abandoned by a crash (merges delete only what they replaced)
            self._background.submit(self._guard, "deleting stray fact files",
                                    self.ws.facts.collect_garbage)

    def compact(self) -> None:
        """Merge the micro-batch files (``realtime.compaction``)."""
        compaction.compact(self.ws.facts, self._background_engine)

    # -- the dispatcher ------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        channels = Channels(self.ws)
        pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="tierwise-delivery")
        try:
            while not self.stop_event.is_set():
                if not self.stats.holder or not self.part.coordinator:
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


__all__ = ["LEASE", "LEASE_SECONDS", "Worker", "lease_name", "release", "try_lease"]
