"""Partitions of the real-time plane: which worker owns which customers.

A customer's *owner key* is its account for a contact (so an account and its people, whose
rules read each other's rows, are always evaluated by one worker) and its own id otherwise,
after merges (``store.customers.owner_keys``). The key's *bucket* is a stable hash of it in
``0 .. BUCKETS - 1`` (CRC-32, the same in every process and on every machine, unlike
Python's ``hash``); with ``count`` partitions, partition ``index`` owns the buckets whose
remainder by ``count`` is ``index``. Received rows carry their bucket (``intake.bucket``),
so a worker reads only its own.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Buckets of the hash: the most partitions a workspace can have.
BUCKETS = 1024


def bucket(key: str) -> int:
    """The bucket of an owner key.

    >>> bucket("C000123"), bucket("C000123") == bucket("C000123")
    (464, True)
    """
    return zlib.crc32(key.encode("utf-8")) % BUCKETS


@dataclass(frozen=True)
class Partition:
    """Partition ``index`` of ``count`` (``Partition(0, 1)``: everything, one worker)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= BUCKETS or not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} of {self.count}: expected 0 <= index "
                             f"< count <= {BUCKETS}")

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def coordinator(self) -> bool:
        """The partition that does what is not per customer: deliveries, SLA deadlines,
        playbook runs, merging files, pruning the intake (partition 0)."""
        return self.index == 0

    def owns_bucket(self, value: int) -> bool:
        return value % self.count == self.index

    def owns(self, key: str) -> bool:
        """Whether this partition owns the owner key ``key``."""
        return self.whole or self.owns_bucket(bucket(key))

    def mine(self, ids: Iterable[str], owner_keys: Mapping[str, str]) -> set[str]:
        """Those of ``ids`` this partition owns, given their owner keys (an id without one
        is its own key)."""
        if self.whole:
            return set(ids)
        return {i for i in ids if self.owns(owner_keys.get(i, i))}

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"


__all__ = ["BUCKETS", "Partition", "bucket"]
