"""``python -m supervisor verify-recovery``: prove restart recovery on a real server.

It drives the server with the official ``flyteidl2`` grpcio client the way Flyte's executor
does: a CreateTask per job (distinct task execution ids), re-sent after any error or
deadline; GetTask per job on a cadence; DeleteTask on a share of the jobs, retried until
OK. Meanwhile it injects the planned faults (``supervisor.verify.make_plan``: one seed, one
schedule), measures each recovery (first GetTask answered, every job live at the fault
answered again), re-sends the CreateTask of one probe execution after each recovery, and
follows every job to its end. Then it reads what the ``verify`` connector recorded
(``connectors.verify``: every external call, so duplicates are counted exactly) and prints
the report; exit 1 on any violation.

Concurrency: one Trio task per job. grpcio's futures carry the calls; each done-callback
wakes its Trio task through the Trio token, so no thread waits on a call. Faults run their
blocking commands in a worker thread.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from connectors.verify import DIR_ENV_VAR, TASK_TYPE, read_events, read_jobs

from ..journal import JournalError, JournalReader, safe_url
from ..verify import FAULT_KINDS, External, FaultOutcome, JobOutcome, Plan, Report, make_plan
from ._settings import DEFAULT_JOURNAL, ENVIRONMENT
from ._verify_evidence import add_lost_evidence, job_id_of
from ._verify_target import Deployed, Served, TargetError

__all__ = ["add_verify_arguments", "verify_command"]

Message = Any  # the official protobuf-runtime messages are untyped

#: Deadline of every call (Propeller's GetTask deadline).
CALL_TIMEOUT = 10.0
#: Pause before a failed call is sent again.
RETRY_DELAY = 0.5
#: How long the tool waits for a fault's recovery before the next fault.
RECOVERY_TIMEOUT = 120.0
#: Default schedule length per fault (a restart and the re-poll of every job take seconds).
SECONDS_PER_FAULT = 10.0
_FINAL = {"SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"}
_GIVE_UP_CODES = {"NOT_FOUND", "INVALID_ARGUMENT", "UNIMPLEMENTED"}


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("the server")
    target.add_argument(
        "--serve",
        action="store_true",
        help="start python -m supervisor serve itself (flags this command does not know go "
        "to serve, e.g. --journal URL); it serves the verify connector",
    )
    target.add_argument(
        "--address", metavar="HOST:PORT", help="a running deployment to test (not with --serve)"
    )
    target.add_argument("--kill-cmd", metavar="CMD", help="shell command that kills the server")
    target.add_argument(
        "--start-cmd",
        metavar="CMD",
        help="shell command that starts it again (none: the deployment restarts it)",
    )
    target.add_argument(
        "--db-stop-cmd", metavar="CMD", help="shell command that stops the database"
    )
    target.add_argument("--db-start-cmd", metavar="CMD", help="... and starts it again")
    target.add_argument(
        "--outage", type=float, default=3.0, metavar="SECONDS", help="database outage length"
    )
    work = parser.add_argument_group("the schedule")
    work.add_argument("--jobs", type=int, default=100, metavar="N", help="jobs to create")
    work.add_argument("--faults", type=int, default=3, metavar="N", help="faults to inject")
    work.add_argument(
        "--kinds",
        default=None,
        metavar="KIND,...",
        help=f"fault kinds to draw from ({', '.join(FAULT_KINDS)}); default kill,term "
        "(and db with --db-stop-cmd)",
    )
    work.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="spread creates and faults over this long (default: 30, or 10 per fault when "
        "that is more: each fault waits for the recovery of the one before)",
    )
    work.add_argument("--seed", type=int, default=None, help="replay a schedule (default: random)")
    work.add_argument(
        "--job-seconds", type=float, default=5.0, metavar="SECONDS", help="longest job run time"
    )
    work.add_argument(
        "--delete-share", type=float, default=0.2, metavar="SHARE", help="share of jobs deleted"
    )
    work.add_argument(
        "--cancel-seconds",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long the verify connector's external cancel takes",
    )
    work.add_argument(
        "--delete-gap",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="send no DeleteTask in the SECONDS before a kill (0: deletes at any moment)",
    )
    work.add_argument(
        "--poll-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="GetTask cadence per job",
    )
    work.add_argument(
        "--settle-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="after the schedule, how long jobs may take to end before they count as lost",
    )
    what = parser.add_argument_group("the connector")
    what.add_argument(
        "--task-type", default=TASK_TYPE, help="task type to create (default %(default)s)"
    )
    what.add_argument(
        "--template", type=Path, metavar="FILE", help="TaskTemplate JSON for another task type"
    )
    what.add_argument(
        "--read-journal",
        metavar="URL",
        help="the server's journal, read (read-only) after the run to count creates and "
        "cancels where the connector shows no external calls; with --serve the served one",
    )
    what.add_argument(
        "--record-dir",
        type=Path,
        metavar="DIR",
        help="the verify connector's directory (SUPERVISOR_VERIFY_DIR of the server); with "
        "--serve a new temporary one",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def verify_command(args: argparse.Namespace, serve_args: Sequence[str]) -> int:
    try:
        run = _Setup.from_args(args, serve_args)
    except (ValueError, TargetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # With --json, stdout is the report alone: progress goes to stderr.
    out = sys.stderr if args.json else sys.stdout
    print(run.plan.describe(), file=out, flush=True)
    print(f"replay with --seed {run.plan.seed}", file=out, flush=True)
    try:
        report, metas, lost_ids = trio.run(_run, run)
    except TargetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        run.target.close()
    if report.external is None and run.journal_url:
        _count_from_journal(report, run.journal_url, args.task_type, metas)
    add_lost_evidence(
        report,
        lost_ids,
        journal_url=run.journal_url,
        log_dir=run.target.log_dir if isinstance(run.target, Served) else None,
        record_dir=run.record_dir if args.task_type == TASK_TYPE else None,
    )
    if run.temporary is not None:
        if report.ok:  # nothing to look into: leave no directory behind
            shutil.rmtree(run.temporary, ignore_errors=True)
            report.notes = [n for n in report.notes if str(run.temporary) not in n]
        else:
            report.notes.append(f"server logs and external calls kept in {run.temporary}")
    print(report.to_json_text() if args.json else report.render(), flush=True)
    return 0 if report.ok else 1


@dataclass
class _Setup:
    plan: Plan
    target: Served | Deployed
    template: Message
    record_dir: Path | None
    args: argparse.Namespace
    run_id: str
    journal_url: str | None
    temporary: Path | None  # a directory of ours (records, server logs)

    @classmethod
    def from_args(cls, args: argparse.Namespace, serve_args: Sequence[str]) -> _Setup:
        """Errors: ValueError for a combination that cannot run."""
        if args.serve == bool(args.address):
            raise ValueError("give --serve (start a server) or --address (a deployment)")
        if serve_args and not args.serve:
            raise ValueError(f"unrecognized arguments: {' '.join(serve_args)}")
        if args.jobs < 1 or args.faults < 0:
            raise ValueError("--jobs must be at least 1 and --faults at least 0")
        if args.kinds is None:
            kinds = ["kill", "term"] if args.serve else ["kill"] if args.kill_cmd else []
            if args.db_stop_cmd:
                kinds.append("db")
        else:
            kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        if any(k in ("kill", "term") for k in kinds) and not (args.serve or args.kill_cmd):
            raise ValueError("kill/term faults need --serve or --kill-cmd")
        if "term" in kinds and not args.serve:
            raise ValueError("term faults need --serve (a deployment is faulted by --kill-cmd)")
        if "db" in kinds and not (args.db_stop_cmd and args.db_start_cmd):
            raise ValueError("db faults need --db-stop-cmd and --db-start-cmd")
        if args.duration is None:
            args.duration = max(30.0, SECONDS_PER_FAULT * args.faults)
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
        plan = make_plan(
            seed,
            jobs=args.jobs,
            faults=args.faults,
            duration=args.duration,
            job_seconds=args.job_seconds,
            delete_share=args.delete_share,
            kinds=tuple(kinds),
        )
        template = _template(args)
        record_dir = args.record_dir
        temporary = None
        if args.serve and record_dir is None:
            temporary = Path(tempfile.mkdtemp(prefix="verify-recovery-"))
            if args.task_type == TASK_TYPE:
                record_dir = temporary
        target: Served | Deployed
        if args.serve:
            log_dir = record_dir or temporary
            assert log_dir is not None
            env = {DIR_ENV_VAR: str(record_dir)} if record_dir is not None else {}
            target = Served(
                _serve_args(serve_args),
                env=env,
                log_dir=log_dir,
                db_stop_cmd=args.db_stop_cmd,
                db_start_cmd=args.db_start_cmd,
            )
        else:
            target = Deployed(
                args.address,
                kill_cmd=args.kill_cmd,
                start_cmd=args.start_cmd,
                db_stop_cmd=args.db_stop_cmd,
                db_start_cmd=args.db_start_cmd,
            )
        journal_url = args.read_journal
        if journal_url is None and args.serve:
            journal_url = _served_journal(serve_args)
        run_id = uuid.uuid4().hex[:8]
        return cls(plan, target, template, record_dir, args, run_id, journal_url, temporary)


def _served_journal(serve_args: Sequence[str]) -> str:
    """The journal URL the served server uses: its --journal, its variable, or the default."""
    args = list(serve_args)
    for i, arg in enumerate(args):
        if arg == "--journal" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--journal="):
            return arg.split("=", 1)[1]
    return os.environ.get(ENVIRONMENT["--journal"], DEFAULT_JOURNAL)


def _count_from_journal(
    report: Report, url: str, task_type: str, metas: Mapping[str, bytes]
) -> None:
    """Per job, the creates and cancels the journal shows (``created``, ``deleted`` events)."""
    try:
        with JournalReader.open(url) as reader:
            found = {}
            for name, meta in metas.items():
                record = reader.find_by_meta(task_type, 0, meta)
                kinds = [e.kind for e in reader.events(record.job_id)] if record else []
                found[name] = External(
                    jobs=kinds.count("created"),
                    creates=kinds.count("created"),
                    cancels=kinds.count("deleted"),
                )
    except (JournalError, ValueError) as exc:
        report.notes.append(f"cannot read the journal {safe_url(url)}: {exc}")
        return
    report.external = found
    report.notes.append(
        f"creates and cancels counted from the journal {safe_url(url)}: a call cut short by a "
        "crash before its result was journalled is not in it"
    )


def _serve_args(user: Sequence[str]) -> list[str]:
    """The user's serve flags, with the verify connector added to ``--modules``."""
    args = list(user)
    if "--entry-points" not in args:
        args = ["--entry-points", "false", *args]
    if "--modules" in args:
        at = args.index("--modules") + 1
        return [*args[:at], "connectors.verify", *args[at:]]
    return [*args, "--modules", "connectors.verify"]


def _template(args: argparse.Namespace) -> Message:
    from flyteidl2.core import tasks_pb2
    from google.protobuf import json_format

    if args.template is not None:
        try:
            text = args.template.read_text()
            return json_format.Parse(text, tasks_pb2.TaskTemplate())
        except (OSError, json_format.ParseError) as exc:
            raise ValueError(f"--template {args.template}: {exc}") from None
    return tasks_pb2.TaskTemplate(type=args.task_type)


# The client ------------------------------------------------------------------------------


async def _call(method: Any, request: Message) -> Message:
    """One unary call (deadline CALL_TIMEOUT) on a grpcio future, awaited from Trio.

    Errors: grpc.RpcError.
    """
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    future = method.future(request, timeout=CALL_TIMEOUT)  # a gRPC deadline, as Propeller sets
    future.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        future.cancel()
        raise
    return future.result()


@dataclass
class _JobState:
    planned: Any
    outcome: JobOutcome
    request: Message
    meta: bytes | None = None
    metas: set[bytes] = field(default_factory=set)
    last_kind: str = ""
    first_at: float = 0.0
    repeats: int = 0

    def note(self, at: float, text: str, kind: str | None = None) -> None:
        """Add to the client's history. A line of the same ``kind`` (default: the same text)
        as the last one replaces it, counted: the history shows changes, not every poll."""
        kind = text if kind is None else kind
        history = self.outcome.history
        if kind == self.last_kind and history:
            self.repeats += 1
            history[-1] = f"{self.first_at:6.2f}s {text} (x{self.repeats + 1}, to {at:.2f}s)"
            return
        self.last_kind, self.first_at, self.repeats = kind, at, 0
        history.append(f"{at:6.2f}s {text}")


@dataclass
class _Faulting:
    """The fault under way (recovery not yet complete) and what it waits for."""

    outcome: FaultOutcome
    pending: set[int]
    all_polled: trio.Event = field(default_factory=trio.Event)


class _Run:
    def __init__(self, setup: _Setup, stub: Any) -> None:
        self.setup = setup
        self.stub = stub
        self.plan = setup.plan
        self.t0 = trio.current_time()
        self.wall0 = time.time()
        self.jobs = [self._job(p) for p in self.plan.jobs]
        self.faults: list[FaultOutcome] = []
        self.current: _Faulting | None = None
        self.deletes_allowed = trio.Event()
        self.deletes_allowed.set()
        self.probe_resends = 0
        self.probe_changes = 0
        self.give_up_at = self.t0 + self.plan.duration + setup.args.settle_timeout
        self.log: Callable[[str], None] = print

    def now(self) -> float:
        return trio.current_time() - self.t0

    def _job(self, planned: Any) -> _JobState:
        from flyteidl2.connector import connector_pb2 as pb
        from flyteidl2.core import identifier_pb2
        from google.protobuf import struct_pb2

        name = f"verify-{self.setup.run_id}-{planned.index}"
        template = type(self.setup.template)()
        template.CopyFrom(self.setup.template)
        if self.setup.args.task_type == TASK_TYPE and self.setup.args.template is None:
            custom = struct_pb2.Struct()
            custom.update(
                {"seconds": planned.seconds, "cancel_seconds": self.setup.args.cancel_seconds}
            )
            template.custom.CopyFrom(custom)
        execution = identifier_pb2.TaskExecutionIdentifier(
            task_id=identifier_pb2.Identifier(
                resource_type=identifier_pb2.TASK,
                project="verify",
                domain="recovery",
                name=name,
                version="v1",
            ),
            node_execution_id=identifier_pb2.NodeExecutionIdentifier(
                node_id="n0",
                execution_id=identifier_pb2.WorkflowExecutionIdentifier(
                    project="verify", domain="recovery", name=self.setup.run_id
                ),
            ),
            retry_attempt=0,
        )
        request = pb.CreateTaskRequest(
            template=template,
            output_prefix=f"file:///tmp/verify-recovery/{name}",
            task_execution_metadata=pb.TaskExecutionMetadata(task_execution_id=execution),
        )
        outcome = JobOutcome(
            name=f"{self.setup.run_id}/n0/{name}/0", delete_planned=planned.delete_at is not None
        )
        return _JobState(planned, outcome, request)

    # -- one job, as Propeller runs it ------------------------------------------------------

    async def job(self, job: _JobState) -> None:
        import grpc

        await trio.sleep_until(self.t0 + job.planned.create_at)
        while job.meta is None:
            if trio.current_time() > self.give_up_at:
                job.outcome.lost = "CreateTask never answered OK"
                return
            sent = self.now()
            try:
                response = await _call(self.stub.CreateTask, job.request)
            except grpc.RpcError as exc:
                job.note(sent, f"CreateTask {_error(exc)}")
                await trio.sleep(RETRY_DELAY)
                continue
            self._got_meta(job, response.resource_meta)
            job.note(sent, f"CreateTask OK after {self.now() - sent:.2f}s")
        job.outcome.created = True
        await self._follow(job)

    def _got_meta(self, job: _JobState, meta: bytes) -> bool:
        """Note a CreateTask answer; True when it differs from the first one."""
        if job.meta is None:
            job.meta = meta
        job.metas.add(meta)
        job.outcome.metas = len(job.metas)
        return meta != job.meta

    async def _follow(self, job: _JobState) -> None:
        import grpc
        from flyteidl2.connector import connector_pb2 as pb
        from flyteidl2.core import execution_pb2

        category = pb.TaskCategory(name=job.request.template.type, version=0)
        get = pb.GetTaskRequest(task_category=category, resource_meta=job.meta)
        delete = pb.DeleteTaskRequest(task_category=category, resource_meta=job.meta)
        delete_at = job.planned.delete_at
        while True:
            if trio.current_time() > self.give_up_at:
                job.outcome.lost = f"still {job.outcome.phase} when the run gave up"
                return
            due = delete_at is not None and self.now() >= delete_at
            if due and job.outcome.delete_ok_at is None and self.deletes_allowed.is_set():
                try:
                    await _call(self.stub.DeleteTask, delete)
                    job.outcome.delete_ok_at = self.now()
                    job.note(self.now(), "DeleteTask OK")
                except grpc.RpcError as exc:
                    job.note(self.now(), f"DeleteTask {_error(exc)}")
            sent = self.now()
            try:
                resource = (await _call(self.stub.GetTask, get)).resource
            except grpc.RpcError as exc:
                code = exc.code().name if hasattr(exc, "code") else ""
                job.note(sent, f"GetTask {_error(exc)}")
                if code in _GIVE_UP_CODES:
                    job.outcome.lost = f"GetTask {code}: {exc.details()}"
                    return
            else:
                phase = execution_pb2.TaskExecution.Phase.Name(resource.phase)
                job.outcome.phase = phase
                job.note(sent, f"GetTask {phase}: {resource.message}".rstrip(": "), phase)
                self._polled(job, sent)
                if phase in _FINAL:
                    job.outcome.ended = True
                    return
            await trio.sleep(self.setup.args.poll_interval * random.uniform(0.8, 1.2))

    def _polled(self, job: _JobState, sent: float) -> None:
        current = self.current
        if current is None or sent < current.outcome.at:
            return
        if current.outcome.first_ok is None:
            current.outcome.first_ok = self.now() - current.outcome.at
        current.pending.discard(job.planned.index)
        if not current.pending and not current.all_polled.is_set():
            current.outcome.all_polled = self.now() - current.outcome.at
            current.all_polled.set()

    # -- faults ----------------------------------------------------------------------------

    async def faults_task(self) -> None:
        gap = self.setup.args.delete_gap
        for planned in self.plan.faults:
            await trio.sleep_until(self.t0 + planned.at)
            if gap and planned.kind != "db":
                # Let every DeleteTask answered so far be carried out before the kill.
                self.deletes_allowed = trio.Event()  # jobs see "not set": hold deletes
                await trio.sleep(gap)
            kind = planned.kind
            await trio.to_thread.run_sync(self.setup.target.inflict, kind)
            # Recovery counts from the moment the server (or database) is gone.
            live = {
                j.planned.index for j in self.jobs if j.meta is not None and not j.outcome.ended
            }
            outcome = FaultOutcome(planned.index, kind, self.now(), live=len(live))
            self.faults.append(outcome)
            self.current = _Faulting(outcome, live)
            if not live:
                self.current.all_polled.set()
            self.log(
                f"fault {planned.index + 1}/{len(self.plan.faults)}: {kind} "
                f"at {outcome.at:.1f}s ({len(live)} live jobs)"
            )
            await trio.to_thread.run_sync(self.setup.target.restore, kind, self.setup.args.outage)
            self.deletes_allowed.set()
            with trio.move_on_after(RECOVERY_TIMEOUT):
                await self.current.all_polled.wait()
            self.log(
                f"fault {planned.index + 1}: first GetTask OK after "
                f"{_fmt(outcome.first_ok)}, all jobs polled after {_fmt(outcome.all_polled)}"
            )
            await self._probe()
            self.current = None

    async def _probe(self) -> None:
        """Re-send the CreateTask of the first created job: the same resource_meta?"""
        import grpc

        probe = next((j for j in self.jobs if j.meta is not None), None)
        if probe is None:
            return
        try:
            response = await _call(self.stub.CreateTask, probe.request)
        except grpc.RpcError:
            return
        self.probe_resends += 1
        if self._got_meta(probe, response.resource_meta):
            self.probe_changes += 1

    # -- the report ------------------------------------------------------------------------

    def report(self) -> Report:
        external = None
        notes = []
        record_dir = self.setup.record_dir
        if record_dir is not None and self.setup.args.task_type == TASK_TYPE:
            external = _external(record_dir, {j.outcome.name for j in self.jobs})
            notes.append(f"external calls recorded in {record_dir}")
        elif not self.setup.journal_url:
            notes.append(
                "external calls are not visible for this connector: duplicates and cancels "
                "are not counted (use the verify connector, or --read-journal)"
            )
        return Report(
            seed=self.plan.seed,
            schedule=self.plan.describe(),
            jobs=[j.outcome for j in self.jobs],
            faults=self.faults,
            external=external,
            probe_resends=self.probe_resends,
            probe_changes=self.probe_changes,
            started_at=self.wall0,
            cancel_seconds=self.setup.args.cancel_seconds,
            expect_success=self.setup.args.task_type == TASK_TYPE,
            notes=notes,
        )

    def progress(self) -> str:
        created = sum(1 for j in self.jobs if j.meta is not None)
        ended = sum(1 for j in self.jobs if j.outcome.ended)
        deleted = sum(1 for j in self.jobs if j.outcome.delete_ok_at is not None)
        return (
            f"{self.now():6.1f}s  created {created}/{len(self.jobs)}  ended {ended}  "
            f"deleted {deleted}  faults {len(self.faults)}/{len(self.plan.faults)}"
        )


def _external(record_dir: Path, names: set[str]) -> dict[str, External]:
    """Per execution, the external jobs that exist and the calls the service recorded.

    Jobs are counted from the service's job files, not from ``create`` lines: a kill
    between a job's creation and its line leaves a job no line calls new. Likewise a cancel
    that took effect counts once even when the kill cut its line.
    """
    found: dict[str, External] = {name: External() for name in names}
    for event in read_events(record_dir):
        ext = found.get(event.execution)
        if ext is None:
            continue
        if event.op == "create":
            ext.creates += 1
        elif event.op == "cancel":
            ext.cancels += 1
        elif event.op == "get":
            ext.gets += 1
    for job in sorted(read_jobs(record_dir), key=lambda job: job.started):
        ext = found.get(job.execution)
        if ext is None:
            continue
        ext.jobs += 1
        if ext.ends_at is None:
            ext.ends_at = job.ends_at
        if job.cancelled:
            ext.cancels = max(ext.cancels, 1)
    return found


def _error(exc: Any) -> str:
    """An RpcError in a few words: its code and details."""
    code = exc.code().name if hasattr(exc, "code") else type(exc).__name__
    details = exc.details() if hasattr(exc, "details") else ""
    return f"{code}: {details}" if details else str(code)


def _fmt(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}s"


async def _run(setup: _Setup) -> tuple[Report, dict[str, bytes], dict[str, str]]:
    """The report, the resource_meta of each job created, and the job id of each lost."""
    import grpc
    from flyteidl2.connector import service_pb2_grpc

    await trio.to_thread.run_sync(setup.target.start)
    with grpc.insecure_channel(setup.target.address) as channel:
        stub = service_pb2_grpc.AsyncConnectorServiceStub(channel)
        run = _Run(setup, stub)
        async with trio.open_nursery() as nursery:
            display = _Display(run)
            run.log = display.line
            nursery.start_soon(display.run)
            async with trio.open_nursery() as work:
                for job in run.jobs:
                    work.start_soon(run.job, job)
                work.start_soon(run.faults_task)
            display.stop()
            nursery.cancel_scope.cancel()
        metas = {j.outcome.name: j.meta for j in run.jobs if j.meta is not None}
        lost = {
            j.outcome.name: job_id_of(j.request.SerializeToString())
            for j in run.jobs
            if j.outcome.lost
        }
        return run.report(), metas, lost


class _Display:
    """Live progress (rich) on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, run: _Run) -> None:
        self.run_ = run
        self.out = sys.stderr if run.setup.args.json else sys.stdout
        self.tty = self.out.isatty() and os.environ.get("TERM") != "dumb"
        self.live: Any = None

    def line(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text)
        else:
            print(text, file=self.out, flush=True)

    async def run(self) -> None:
        if not self.tty:
            while True:
                await trio.sleep(5.0)
                print(self.run_.progress(), file=self.out, flush=True)
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        console = Console(file=self.out)
        with Live(
            Text(self.run_.progress()), console=console, refresh_per_second=4, transient=True
        ) as live:
            self.live = live
            try:
                while True:
                    live.update(Text(self.run_.progress()))
                    await trio.sleep(0.25)
            finally:
                self.live = None

    def stop(self) -> None:
        """The run is over: the next cancel ends the display."""
