"""What the real-time worker did, as ``GET /v1/realtime`` and ``tierwise worker`` show it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from tierwise.store.control import utcnow

#: Rounds whose durations ``Stats`` sums up.
ROUNDS_KEPT = 1000


@dataclass
class Stats:
    started_at: datetime = field(default_factory=utcnow)
    holder: bool = False
    #: The partition this worker holds ("2/4"; empty: one worker for everyone).
    partition: str = ""
    batches: int = 0
    rows_moved: int = 0
    #: Rows handed to another partition's worker (their owner changed since received).
    rows_handed: int = 0
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

    def take_rounds(self, rounds: Iterable[tuple[float, bool]]) -> None:
        """Sum up the durations of the last rounds that did work: (seconds, swept).

        >>> s = Stats(); s.take_rounds([(0.1, False), (0.3, True), (0.2, False)])
        >>> s.round_p50_seconds, s.round_p99_seconds, s.round_max_seconds, s.sweep_rounds
        (0.2, 0.3, 0.3, 1)
        """
        rounds = list(rounds)
        if not rounds:
            return
        ordered = sorted(s for s, _ in rounds)
        self.round_p50_seconds = round(ordered[len(ordered) // 2], 4)
        self.round_p99_seconds = round(ordered[min(len(ordered) - 1,
                                                   int(len(ordered) * 0.99))], 4)
        self.round_max_seconds = round(ordered[-1], 4)
        self.sweep_rounds = sum(1 for _, swept in rounds if swept)
