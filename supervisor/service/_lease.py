"""The lease rules of a replica: when to heartbeat, when peers call it dead, when it must stop.

Peers judge a replica by the database clock: dead once its last heartbeat (written with the
database's ``now()``) is ``dead_after`` seconds old. The replica judges itself on its own
clock (Trio's), counting from when its last successful heartbeat *started*: the database
stamped that heartbeat later than that, so the replica's count always runs ahead of its
peers'. It stops its own actors once ``stop_after`` (one heartbeat interval before
``dead_after``) has passed without a successful heartbeat, so no peer may adopt a job while
its actor still runs (clock rates assumed equal; a hung process that cannot even count is
caught by the fence on its next write).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Lease", "LeaseRules"]


@dataclass(frozen=True, slots=True)
class LeaseRules:
    """``heartbeat_interval`` and ``dead_after`` in seconds (``--heartbeat-interval``,
    ``--dead-after``)."""

    heartbeat_interval: float = 2.0
    dead_after: float = 10.0

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= 0:
            raise ValueError("the heartbeat interval must be positive")
        if self.dead_after < 3 * self.heartbeat_interval:
            raise ValueError(
                f"dead-after ({self.dead_after:g} s) must be at least three heartbeat"
                f" intervals ({3 * self.heartbeat_interval:g} s)"
            )

    @property
    def stop_after(self) -> float:
        """Seconds without a successful heartbeat after which a replica stops its actors."""
        return self.dead_after - self.heartbeat_interval


class Lease:
    """One replica's view of its own lease, on a monotonic clock (``trio.current_time``)."""

    def __init__(self, rules: LeaseRules, now: float) -> None:
        self.rules = rules
        self.confirmed = now  # start of the last heartbeat known to have committed

    def renewed(self, started: float) -> None:
        """A heartbeat that started at ``started`` has committed."""
        self.confirmed = max(self.confirmed, started)

    def must_stop(self, now: float) -> bool:
        """True once the replica must stop its actors: peers may soon adopt its jobs."""
        return now >= self.confirmed + self.rules.stop_after

    def stop_at(self) -> float:
        """When ``must_stop`` turns true unless a heartbeat commits first."""
        return self.confirmed + self.rules.stop_after

    def next_beat(self, now: float) -> float:
        """When to start the next heartbeat: one interval after the last confirmed one, or
        at once when that is past."""
        return max(now, self.confirmed + self.rules.heartbeat_interval)
