"""A replica's lease rules on virtual time: it stops its actors before peers call it dead."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from supervisor.service import Lease, LeaseRules


def test_defaults_are_a_heartbeat_every_2_s_and_dead_after_10_s() -> None:
    rules = LeaseRules()
    assert (rules.heartbeat_interval, rules.dead_after, rules.stop_after) == (2.0, 10.0, 8.0)


@pytest.mark.parametrize(("interval", "dead"), [(0.0, 10.0), (2.0, 5.9)])
def test_settings_that_leave_no_margin_are_refused(interval: float, dead: float) -> None:
    with pytest.raises(ValueError, match=r"heartbeat interval|dead-after"):
        LeaseRules(heartbeat_interval=interval, dead_after=dead)


async def test_heartbeats_every_interval_while_they_commit(autojump_clock: Any) -> None:
    lease = Lease(LeaseRules(), trio.current_time())
    starts: list[float] = []
    while len(starts) < 5:
        await trio.sleep_until(lease.next_beat(trio.current_time()))
        starts.append(trio.current_time())
        await trio.sleep(0.3)  # the heartbeat's commit
        lease.renewed(starts[-1])
        assert not lease.must_stop(trio.current_time())
    assert starts == [2.0, 4.0, 6.0, 8.0, 10.0]


async def test_a_replica_that_cannot_heartbeat_stops_before_peers_may_adopt(
    autojump_clock: Any,
) -> None:
    rules = LeaseRules(heartbeat_interval=2.0, dead_after=10.0)
    lease = Lease(rules, trio.current_time())
    started = trio.current_time()
    await trio.sleep(0.5)  # the database stamps the heartbeat half a second after it started
    stamped = trio.current_time()
    lease.renewed(started)
    # From here every heartbeat fails (the database is unreachable).
    await trio.sleep_until(lease.stop_at())
    assert lease.must_stop(trio.current_time())
    peers_adopt_at = stamped + rules.dead_after
    assert peers_adopt_at - trio.current_time() >= rules.heartbeat_interval


async def test_a_late_commit_of_an_old_heartbeat_does_not_extend_the_lease(
    autojump_clock: Any,
) -> None:
    lease = Lease(LeaseRules(), trio.current_time())
    lease.renewed(4.0)
    lease.renewed(2.0)  # an older heartbeat's commit reported after a newer one
    assert lease.stop_at() == 12.0
    await trio.sleep(11.9)
    assert not lease.must_stop(trio.current_time())
    await trio.sleep(0.1)
    assert lease.must_stop(trio.current_time())
