"""``supervisor._job``: the journal form of a report, and the memory that makes polls cheap."""

from __future__ import annotations

import datetime as dt

from connectors import Phase
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import TaskLog
from flyteproto.google.protobuf import Struct
from supervisor._job import Observer, observed


def _report(*links: TaskLog, info: dict[str, object] | None = None) -> pb.Resource:
    return pb.Resource(
        phase=Phase.RUNNING,
        message="running",
        log_links=list(links),
        custom_info=Struct.from_dict(info) if info is not None else None,
    )


def _console(uri: str = "https://console/job/1") -> TaskLog:
    return TaskLog(name="Console", uri=uri)


def test_an_observer_sees_what_observed_sees() -> None:
    report = _report(_console(), _console("https://other"), info={"rows": 3})
    assert Observer().observe(report) == observed(report)


def test_an_unchanged_report_gives_the_same_observation() -> None:
    observer = Observer()
    first = observer.observe(_report(_console(), info={"rows": 3}))
    assert observer.observe(_report(_console(), info={"rows": 3})) == first


def test_every_changed_field_of_a_link_is_seen() -> None:
    observer = Observer()
    observer.observe(_report(_console()))
    changed = [
        _console("https://console/job/2"),
        TaskLog(name="Console", uri="https://console/job/1", ready=True),
        TaskLog(name="Console", uri="https://console/job/1", ttl=dt.timedelta(seconds=5)),
        TaskLog(name="Console", uri="https://console/job/1", icon_uri="https://icon"),
    ]
    for link in changed:
        assert observer.observe(_report(link)) == observed(_report(link))


def test_a_link_mutated_and_sent_again_is_seen() -> None:
    observer = Observer()
    link = _console()
    observer.observe(_report(link))
    link.uri = "https://console/job/2"
    assert observer.observe(_report(link)).log_links == observed(_report(link)).log_links
    assert "job/2" in observer.observe(_report(link)).log_links


def test_changed_custom_info_and_links_added_or_dropped_are_seen() -> None:
    observer = Observer()
    observer.observe(_report(_console(), info={"rows": 3}))
    changed = _report(_console(), info={"rows": 4})
    assert (
        observer.observe(changed).custom_info
        == observed(changed).custom_info
        != (observed(_report(_console(), info={"rows": 3})).custom_info)
    )
    assert observer.observe(_report(info={"rows": 4})).log_links == "[]"
    assert observer.observe(_report(_console(), _console("https://b"), info={"rows": 4})) == (
        observed(_report(_console(), _console("https://b"), info={"rows": 4}))
    )
