"""``supervisor.actor``: the journal form of a report, and the memory that makes polls cheap."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from connectors import Phase
from flyteproto.flyteidl2 import connector as pb
from flyteproto.flyteidl2.core import (
    Literal,
    Primitive,
    Scalar,
    TaskLog,
    TaskLogLinkType,
    TaskLogMessageFormat,
)
from flyteproto.flyteidl2.task import NamedLiteral, Outputs
from flyteproto.google.protobuf import Struct
from supervisor.actor import (
    Observer,
    answer_for,
    encode_answer,
    link_from_json,
    link_to_json,
    observed,
    with_observation,
)
from supervisor.journal import CreateState, DeleteState, JobRecord


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


_RECORD = JobRecord(
    job_id="j1",
    task_type="fake",
    task_type_version=0,
    connector="Fake connector",
    attempt=0,
    create_state=CreateState.CREATED,
    delete_state=DeleteState.NONE,
    phase=int(Phase.QUEUED),
    created_at=0.0,
    updated_at=0.0,
    resource_meta=b"{}",
)


def test_a_journalled_record_is_remembered_as_the_last_report() -> None:
    report = _report(_console(), _console("https://b"), info={"rows": 3})
    seen = observed(report)
    record = dataclasses.replace(
        _RECORD,
        phase=seen.phase,
        message=seen.message,
        log_links=seen.log_links,
        custom_info=seen.custom_info,
    )
    again = Observer(record).observe(report)
    assert again == seen
    # The first poll after a restart converts nothing: it hands back the journalled texts.
    assert again.log_links is record.log_links
    assert again.custom_info is record.custom_info


def test_an_unreadable_record_is_not_remembered() -> None:
    record = dataclasses.replace(_RECORD, phase=int(Phase.RUNNING), log_links="not json")
    report = _report(_console())
    assert Observer(record).observe(report) == observed(report)


@pytest.mark.parametrize(
    "link",
    [
        TaskLog(name="Console", uri="https://console/job/1"),
        TaskLog(uri="https://u", ready=True, show_while_pending=True, icon_uri="https://i"),
        TaskLog(name="n", hide_once_finished=True),
        TaskLog(name="n", uri="u", ttl=dt.timedelta(seconds=90)),
        TaskLog(name="n", message_format=TaskLogMessageFormat.JSON),
        TaskLog(name="n", link_type=TaskLogLinkType.DASHBOARD),
        TaskLog(),
    ],
)
def test_a_link_reads_back_from_its_journal_form_as_from_dict_reads_it(link: TaskLog) -> None:
    item = link.to_dict()
    assert link_from_json(item) == TaskLog.from_dict(item) == link


# -- the encoded GetTask answer ---------------------------------------------------------------

_ROWS = Outputs(
    literals=[
        NamedLiteral(name="rows", value=Literal(scalar=Scalar(primitive=Primitive(integer=3))))
    ]
)
_LINKS = [
    TaskLog(
        name="Console",
        uri="https://console/job/1",
        message_format=TaskLogMessageFormat.JSON,
        ttl=dt.timedelta(seconds=1.5),
    ),
    _console("https://other"),
]


@pytest.mark.parametrize(
    "report",
    [
        pb.Resource(),
        _report(),
        _report(*_LINKS, info={"rows": 3, "nested": {"a": [1, "x", None, True]}}),
        pb.Resource(phase=Phase.SUCCEEDED, outputs=_ROWS, message="d\u00f6ne " * 40),
        pb.Resource(phase=Phase.FAILED, outputs=Outputs(), custom_info=Struct()),
    ],
    ids=["empty", "running", "links-and-info", "outputs-long-message", "empty-messages"],
)
def test_the_encoded_answer_is_the_serialised_answer(report: pb.Resource) -> None:
    record = with_observation(_RECORD, observed(report), now=1.0)
    assert encode_answer(record) == bytes(answer_for(record))


def test_the_encoded_answer_follows_every_change_of_the_record() -> None:
    running = with_observation(_RECORD, observed(_report(*_LINKS)), now=1.0)
    answers = [
        encode_answer(record)
        for record in (
            _RECORD,
            running,
            dataclasses.replace(running, message="slow"),
            dataclasses.replace(running, log_links=json.dumps([_LINKS[1].to_dict()])),
            dataclasses.replace(running, phase=int(Phase.SUCCEEDED)),
        )
    ]
    assert len(set(answers)) == len(answers)
    assert (
        pb.GetTaskResponse.parse(answers[-1]).resource
        == answer_for(dataclasses.replace(running, phase=int(Phase.SUCCEEDED))).resource
    )


@pytest.mark.parametrize(
    "link",
    [
        TaskLog(name="Console", uri="https://console/job/1"),
        TaskLog(uri="https://u", ready=True, show_while_pending=True, icon_uri="https://i"),
        TaskLog(name="n", hide_once_finished=True),
        TaskLog(name="ünïcødé", uri="https://x/ü?a=1&b=2"),
        TaskLog(name="n", uri="u", ttl=dt.timedelta(seconds=90)),
        TaskLog(name="n", ttl=dt.timedelta(0)),
        TaskLog(name="n", message_format=TaskLogMessageFormat.JSON),
        TaskLog(name="n", link_type=TaskLogLinkType.DASHBOARD),
        TaskLog(),
    ],
)
def test_a_links_journal_form_is_what_to_dict_gives(link: TaskLog) -> None:
    assert link_to_json(link) == link.to_dict()
    assert link_from_json(link_to_json(link)) == link
