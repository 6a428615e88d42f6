"""Merging the micro-batch files that intake writes, on the worker's background thread.

Micro-batch files of a table are merged, in two tiers, once there are ``COMPACT_AT_FILES``
of them: readers open few files however long the server runs. The micro-batches go into a
chunk of about ``CHUNK_ROWS`` rows; once the chunks and micro-batches at the end of a table
hold ``SMALL_FILE_ROWS`` rows together, they become one file that stays. Merging every few
seconds into one growing file of up to ``SMALL_FILE_ROWS`` rows instead rewrote each row
five times on average, and read it ahead as often for the in-memory facts.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from tierwise.engines.base import Engine
from tierwise.realtime.intake import KEYS
from tierwise.store.facts import FactStore

log = logging.getLogger("tierwise.worker")

COMPACT_AT_FILES = 20
CHUNK_ROWS = 25_000
SMALL_FILE_ROWS = 200_000
#: Niceness of the worker's background thread on Linux. Its merges and searches have no
#: deadline; at the same priority, the rounds running beside a merge took ~70 % longer
#: (median 0.42 s against 0.25 s in a 10-minute run).
BACKGROUND_NICENESS = 10


def yield_the_cores() -> None:
    """Lower the calling thread's priority (Linux schedules threads one by one)."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
        except OSError:  # not allowed here: merges then run at the loop's priority
            log.info("could not lower the priority of the background thread")


def compact(facts: FactStore, engine: Engine) -> list[str]:
    """Merge the micro-batch files of each intake table, in two tiers; returns the tables
    merged. The in-memory copies the loop uses need not read a merged file in the loop
    (up to ``SMALL_FILE_ROWS`` rows; reading one in a round made it the slowest of its ten
    seconds): the key index knows a merge of files it holds, and the facts by customer
    read a merged file here before it is published. What either could not take that way
    (redirects changed meanwhile) is read ahead here too; the loop's next refresh installs
    it (only the loop changes the copies: its scans decide which files count)."""
    merged = []
    for table in KEYS:
        replaced, written = facts.compact(engine, table, min_files=2,
                                          small_rows=SMALL_FILE_ROWS, min_rows=SMALL_FILE_ROWS)
        if written == replaced:  # not that many rows yet: micro-batches into a chunk
            replaced, written = facts.compact(engine, table, min_files=COMPACT_AT_FILES,
                                              small_rows=CHUNK_ROWS)
        if written < replaced:
            merged.append(table)
    if merged:  # what merges replaced long enough ago (strays: hourly, in the sweep)
        facts.collect_garbage(strays=False)
    for table in merged:
        facts.follow(engine, table, ahead=True)
    return merged
