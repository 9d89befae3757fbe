"""Markdown for a run's results: the issue's targets table, then the detail behind it."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["render"]


def _f(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(ours: float, reference: float) -> str:
    if not reference or math.isnan(reference) or math.isnan(ours):
        return "n/a"
    return f"{ours / reference:,.2f}x"


def _seconds(value: float) -> str:
    return f"{_f(value, 1 if value < 10 else 0)} s"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def _rpc(row: dict[str, Any] | None, rpc: str, field: str) -> float:
    if row is None or rpc not in row:
        return float("nan")
    value: float = row[rpc][field]
    return value


_NOT_RUN = "not run"
_TARGET_JOBS = 100_000


def _row(figure: str, target: str, measured: str, ok: bool | None, note: str = "") -> list[str]:
    verdict = _NOT_RUN if ok is None else _verdict(ok)
    if ok is not None and note:
        verdict += f" ({note})"
    return [figure, target, measured, verdict]


def _not_run(figure: str, target: str, why: str = "") -> list[str]:
    return [figure, target, why or _NOT_RUN, _NOT_RUN]


def _pair(
    load: dict[str, dict[str, dict[str, Any]]], key: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    by_server = load.get(key, {})
    return by_server.get("ours"), by_server.get("reference")


def _versus(
    results: dict[str, Any], figure: str, target: str, key: str, rpc: str, at_least: float
) -> list[str]:
    """Ours / reference RPC/s of ``rpc`` in scenario ``key``, judged against ``at_least``."""
    if "load" not in results["parts"]:
        return _not_run(figure, target)
    ours, ref = _pair(results["load"], key)
    if ours is None:
        return _not_run(figure, target, f"no {key} scenario in this run")
    o = _rpc(ours, rpc, "rps")
    if ref is None:
        return _not_run(figure, target, f"ours {_f(o)}/s; no reference in this run")
    r = _rpc(ref, rpc, "rps")
    measured = f"{_f(o)} vs {_f(r)}/s = {_ratio(o, r)}"
    if rpc == "GetTask":
        op99, rp99 = _rpc(ours, rpc, "p99_ms"), _rpc(ref, rpc, "p99_ms")
        measured += f"; p99 {_f(op99, 1)} vs {_f(rp99, 1)} ms"
    return _row(figure, target, measured, None if math.isnan(o * r) else o / r >= at_least)


def _top_scale(results: dict[str, Any], *, window: bool) -> dict[str, Any] | None:
    runs = [s for s in results["scale"] if s["window"] or not window]
    return max(runs, key=lambda s: s["jobs"]) if runs else None


def _short(run: dict[str, Any]) -> str:
    """The verdict's note when the largest run is smaller than the target's 100,000 jobs."""
    return "" if run["jobs"] >= _TARGET_JOBS else f"at {run['jobs']:,} jobs, not 100,000"


def _targets(results: dict[str, Any]) -> list[list[str]]:
    """The issue's table, row for row: every figure against its target."""
    rows: list[list[str]] = []
    scale_ran = "scale" in results["parts"]
    top = _top_scale(results, window=True)

    figure, target = "CPU per poll of an unchanged job (largest scale run)", "<= 50 us"
    if top is None:
        why = "no steady-state window in this run's scale runs" if scale_ran else ""
        rows.append(_not_run(figure, target, why))
    else:
        us = top["cpu_per_poll_us"]
        measured = f"{_f(us)} us at {top['jobs']:,} jobs ({_f(top['polls_per_second'])} polls/s)"
        ok = None if math.isnan(us) else us <= 50
        rows.append(_row(figure, target, measured, ok, _short(top)))

    figure, target = "poll lag p99, 100,000 jobs, 30 s interval", "< 1 s"
    if top is None:
        rows.append(_not_run(figure, target))
    else:
        p99 = top["lag_p99"]
        measured = f"{_f(p99, 3)} s (p50 {_f(top['lag_p50'], 3)} s) at {top['jobs']:,} jobs"
        ok = None if math.isnan(p99) else p99 < 1.0
        rows.append(_row(figure, target, measured, ok, _short(top)))

    figure, target = "RSS per live job", "<= 8 KB (8,000 B)"
    if top is None:
        rows.append(_not_run(figure, target))
    else:
        per_job = top["rss_per_job_bytes"]
        measured = f"{_f(per_job)} B at {top['jobs']:,} jobs"
        rows.append(_row(figure, target, measured, per_job <= 8_000, _short(top)))

    figure = "resume after kill -9, ~100,000 unfinished jobs, all polling"
    target = "< 5 s"
    resumed = _top_scale(results, window=False)
    if resumed is None:
        rows.append(_not_run(figure, target))
    else:
        done = resumed["resume_polled"] >= resumed["jobs"]
        seconds = resumed["resume_all_polled_seconds"]
        measured = (
            f"{resumed['jobs']:,} jobs: serving after "
            f"{_f(resumed['resume_serving_seconds'], 1)} s, "
            + (
                f"all polling after {_f(seconds, 1)} s"
                if done
                else f"{resumed['resume_polled']:,} polled, not all in time"
            )
        )
        rows.append(_row(figure, target, measured, done and seconds < 5.0, _short(resumed)))

    figure, target = "server CPU per durable CreateTask (create 0 ms c64)", "<= 500 us"
    ours, ref = _pair(results["load"], "create 0ms c64")
    if "load" not in results["parts"]:
        rows.append(_not_run(figure, target))
    elif ours is None:
        rows.append(_not_run(figure, target, "no create 0ms c64 scenario in this run"))
    else:
        us = ours["cpu_per_request_us"]
        reference = f" (reference {_f(ref['cpu_per_request_us'])} us, not durable)" if ref else ""
        rows.append(_row(figure, target, f"{_f(us)} us{reference}", us <= 500))

    rows.append(
        _versus(
            results,
            "durable CreateTask/s vs reference, 0 ms, c64",
            ">= 1.0x",
            "create 0ms c64",
            "CreateTask",
            1.0,
        )
    )
    rows.append(
        _versus(
            results,
            "GetTask RPC/s vs reference, lifecycle load, 0 ms, c64",
            ">= 1.0x",
            "lifecycle 0ms c64",
            "GetTask",
            1.0,
        )
    )
    rows.append(
        _versus(
            results,
            "GetTask RPC/s vs reference, lifecycle, 50 ms, c64",
            ">= 5x",
            "lifecycle 50ms c64",
            "GetTask",
            5.0,
        )
    )
    rows.append(_journal_target(results))
    return rows


def _journal_target(results: dict[str, Any]) -> list[str]:
    figure, target = "journal commits, SQLite / PostgreSQL", ">= 30k / >= 20k per s"
    if "journal" not in results["parts"]:
        return _not_run(figure, target)
    parts = []
    verdicts: list[bool] = []
    for backend, name, goal in (("sqlite", "SQLite", 30_000), ("postgresql", "PostgreSQL", 20_000)):
        rates = [j for j in results["journal"] if j["backend"] == backend]
        if not rates:
            parts.append(f"{name} not run")
            continue
        best = max(rates, key=lambda j: j["rate"])
        verdicts.append(best["rate"] >= goal)
        parts.append(f"{name} {_f(best['rate'])}/s ({best['writers']:,} writers)")
    ok = all(verdicts) if verdicts else None
    missing = len(verdicts) < 2 and ok is not None
    return _row(figure, target, "; ".join(parts), ok, "PostgreSQL not run" if missing else "")


def _other_figures(load: dict[str, dict[str, dict[str, Any]]]) -> list[list[str]]:
    """The figures outside the issue's table: earlier targets, kept for comparison."""
    rows: list[list[str]] = []
    per_get = []
    measured: list[float] = []
    for key in ("lifecycle 0ms c64", "lifecycle 50ms c64"):
        ours, ref = _pair(load, key)
        if ours is None:
            continue
        o = ours["external_gets_per_gettask"]
        r = ref["external_gets_per_gettask"] if ref else float("nan")
        if not math.isnan(o):
            measured.append(o)
        per_get.append(f"{key.split()[1]}: ours {_f(o, 3)}, reference {_f(r, 3)}")
    if per_get:
        rows.append(
            [
                "external calls per GetTask, lifecycle load",
                "0 (reference: 1)",
                "; ".join(per_get) + " (ours: the actors' own scheduled polls / GetTasks)",
                _verdict(max(measured) < 0.1 if measured else None),
            ]
        )
    for c in (16, 64):
        ours, ref = _pair(load, f"lifecycle 50ms c{c}")
        if ours is None or ref is None:
            continue
        o, r = _rpc(ours, "GetTask", "rps"), _rpc(ref, "GetTask", "rps")
        op99, rp99 = _rpc(ours, "GetTask", "p99_ms"), _rpc(ref, "GetTask", "p99_ms")
        ok = None if math.isnan(o * r * op99 * rp99) else (o / r >= 5 and op99 <= rp99 / 5)
        rows.append(
            [
                f"GetTask vs reference, lifecycle, 50 ms, concurrency {c}",
                ">= 5x RPC/s, p99 <= 1/5 of reference",
                f"{_f(o)} vs {_f(r)} = {_ratio(o, r)}; p99 {_f(op99, 1)} ms vs "
                f"{_f(rp99, 1)} ms = {_ratio(op99, rp99)}",
                _verdict(ok),
            ]
        )
    ours, ref = _pair(load, "lifecycle 0ms c16")
    if ours is not None and ref is not None:
        o, r = _rpc(ours, "GetTask", "rps"), _rpc(ref, "GetTask", "rps")
        ok = None if math.isnan(o * r) else o / r >= 1.0
        rows.append(
            [
                "GetTask RPC/s vs reference, lifecycle, 0 ms, concurrency 16",
                ">= 1.0x",
                f"{_f(o)} vs {_f(r)} = {_ratio(o, r)}",
                _verdict(ok),
            ]
        )
    for latency in (0, 50):
        ours, ref = _pair(load, f"create {latency}ms c64")
        if ours is None or ref is None:
            continue
        o, r = _rpc(ours, "CreateTask", "rps"), _rpc(ref, "CreateTask", "rps")
        ok = None if math.isnan(o * r) else o / r >= 0.5
        rows.append(
            [
                f"durable CreateTask/s vs reference's CreateTask/s, {latency} ms, concurrency 64",
                ">= 0.5x (the earlier target)",
                f"{_f(o)} vs {_f(r)} = {_ratio(o, r)}",
                _verdict(ok),
            ]
        )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _load_detail(load: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for key, by_server in load.items():
        for server in ("ours", "reference"):
            row = by_server.get(server)
            if row is None:
                continue
            rpcs = [
                f"{rpc[:-4]} {_f(row[rpc]['rps'])}/s p50 {_f(row[rpc]['p50_ms'], 1)} "
                f"p99 {_f(row[rpc]['p99_ms'], 1)}"
                for rpc in ("CreateTask", "GetTask", "DeleteTask")
                if rpc in row
            ]
            calls = row["external_calls"]
            rows.append(
                [
                    key,
                    server,
                    "<br>".join(rpcs),
                    _f(row["cpu_per_request_us"]),
                    f"{_f(100 * row['server_cpu_util'])}% / {_f(100 * row['client_cpu_util'])}%",
                    _f(row["peak_rss_mib"]),
                    " ".join(f"{k} {v:,}" for k, v in calls.items()),
                    str(row["errors"]),
                ]
            )
        ours, ref = by_server.get("ours"), by_server.get("reference")
        if ours and ref:
            rpc = "GetTask" if "GetTask" in ours else "CreateTask"
            rows.append(
                [
                    key,
                    "**ours/ref**",
                    f"{rpc[:-4]} {_ratio(_rpc(ours, rpc, 'rps'), _rpc(ref, rpc, 'rps'))} RPC/s, "
                    f"p99 {_ratio(_rpc(ours, rpc, 'p99_ms'), _rpc(ref, rpc, 'p99_ms'))}",
                    _ratio(ours["cpu_per_request_us"], ref["cpu_per_request_us"]),
                    "",
                    _ratio(ours["peak_rss_mib"], ref["peak_rss_mib"]),
                    "",
                    "",
                ]
            )
    header = [
        "scenario",
        "server",
        "RPC/s, latency ms",
        "server CPU us/request",
        "CPU server / client",
        "peak RSS MiB",
        "external calls in window",
        "errors",
    ]
    return _table(header, rows)


def _scale_detail(scale: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            f"{s['jobs']:,} ({s['answered']:,} answered)",
            _f(s["create_rate"]),
            f"{_f(s['rss_idle_mib'])} -> {_f(s['rss_live_mib'])}",
            _f(s["rss_per_job_bytes"]),
            _f(s["polls_per_second"]),
            _f(s["cpu_per_poll_us"]),
            f"{_f(100 * s['server_cpu_util'])}%",
            f"{_f(s['lag_p50'] * 1e3, 1)} / {_f(s['lag_p99'] * 1e3, 1)}",
            f"{_f(s['probe_p50'] * 1e3, 1)} / {_f(s['probe_p99'] * 1e3, 1)} ({s['probe_gets']})",
            f"{_f(s['resume_serving_seconds'], 1)} / {_f(s['resume_all_polled_seconds'], 1)}",
            _f(s["hwm_resumed_mib"]),
        ]
        for s in scale
    ]
    header = [
        "jobs",
        "CreateTask/s",
        "RSS MiB idle -> live",
        "RSS B/job",
        "polls/s",
        "CPU us/poll",
        "CPU",
        "poll lag p50/p99 ms",
        "GetTask p50/p99 ms (n)",
        "resume: serving / all polled s",
        "peak RSS MiB after resume",
    ]
    return _table(header, rows)


def _journal_detail(journal: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            j["label"],
            f"{j['writers']:,}",
            _f(j["rate"]),
            _f(j["mean_batch"]),
            f"{j['puts']:,} in {_f(j['window'], 1)} s",
        ]
        for j in journal
    ]
    return _table(["backend", "writers", "transitions/s", "mean batch", "puts"], rows)


def _sizing(scale: list[dict[str, Any]]) -> list[str]:
    """Live jobs vs RSS and CPU: what one process needs per live job."""
    runs = sorted((s for s in scale if s["window"]), key=lambda s: s["jobs"])
    if not runs:
        return []
    rows = [
        [
            f"{s['jobs']:,}",
            _f(s["rss_live_mib"]),
            _f(s["rss_per_job_bytes"]),
            _f(s["polls_per_second"]),
            f"{_f(100 * s['server_cpu_util'])}%",
            _f(s["cpu_per_poll_us"]),
            f"{_f(s['lag_p50'] * 1e3, 1)} / {_f(s['lag_p99'] * 1e3, 1)}",
        ]
        for s in runs
    ]
    header = [
        "live jobs",
        "RSS total MiB",
        "RSS B/job",
        "polls/s",
        "server CPU (% of one core)",
        "CPU us/poll",
        "poll lag p50 / p99 ms",
    ]
    note = (
        "Every job polls every 30 s (the bench connector's interval); the window is the "
        "steady state after every job's first poll. RSS per job is (RSS live - RSS after "
        f"{100} warm-up jobs) / the jobs after them."
    )
    if any(s["jobs"] < 10_000 for s in runs):
        note += (
            " Below 10,000 jobs that difference is a few MiB, the size of the allocator's and "
            "the caches' own noise: read RSS per job from the larger runs. CPU per poll is the "
            "window's CPU over its polls, so it carries the process's fixed costs too (the "
            "10 GetTask/s of the latency probe, the bench service's counters file written 10 "
            "times a second, timers); at 1,000 jobs (33 polls/s) they dominate it."
        )
    return [*_table(header, rows), "", note]


def _cadence(rows: list[dict[str, Any]]) -> list[str]:
    """Propeller's cadence, measured, and the calls of larger deployments computed from it."""
    if not rows:
        return []
    lines = _table(
        [
            "server",
            "live jobs",
            "Propeller's GetTask/s",
            "external calls/s",
            "external calls per GetTask",
            "server CPU % of one core",
            "a finished job unseen for up to",
        ],
        [
            [
                r["server"],
                f"{r['jobs']:,}",
                _f(r["gettask_rate"], 1),
                _f(r["external_rate"], 1),
                _f(r["external_per_gettask"], 2),
                f"{_f(100 * r['cpu_per_second'], 1)}%",
                _seconds(r["unnoticed_seconds"]),
            ]
            for r in rows
        ],
    )
    resync, qps = rows[0]["resync"], rows[0]["qps"]
    lines += [
        "",
        f"Propeller's client: every task asked {resync:g} s after its create or its previous "
        f"GetTask, through one token bucket of {qps:g} QPS (burst {qps:g}); the window "
        f"({rows[0]['window']:.0f} s) starts one resync period after the last create, when "
        "the first asks come due"
        + ("; both servers side by side" if len({r["server"] for r in rows}) > 1 else "")
        + ". Unseen: ours polls every "
        "job on its connector's interval (plus its poll lag p99) whether Propeller asks or "
        f"not; the reference learns of a finish only when Propeller asks, every "
        f"max({resync:g} s, jobs / {qps:g}) s. Propeller itself still learns of it at its "
        "next GetTask with either server; ours has recorded it (outputs, phase) by then.",
    ]
    ours = [r for r in rows if r["server"] == "ours"]
    ref = [r for r in rows if r["server"] == "reference"]
    if not ours:
        return lines
    # Per-job rates from the largest measured runs, scaled to a deployment's size.
    per_job = max(ours, key=lambda r: r["jobs"])["external_per_job_second"]
    per_get = max(ref, key=lambda r: r["jobs"])["external_per_gettask"] if ref else float("nan")
    interval = max(ours, key=lambda r: r["jobs"])["unnoticed_seconds"]
    computed = []
    worse = []
    measured_jobs = {r["jobs"] for r in ours}
    for jobs in (1_000, 10_000, 100_000):
        asks = min(jobs / resync, qps)
        r, o = asks * per_get, jobs * per_job
        if not math.isnan(r) and o > r * 1.05 and jobs not in measured_jobs:
            worse.append(f"{o / r:,.1f}x at {jobs:,} jobs")
        computed.append(
            [
                f"{jobs:,}",
                _f(asks, 1),
                _f(r, 1),
                _f(o, 1),
                _ratio(o, r),
                f"{_seconds(interval)} / {_seconds(max(resync, jobs / qps))}",
            ]
        )
    lines += [
        "",
        "Computed from the measured rates (ours: external calls per job per second; the "
        "reference: external calls per GetTask, times Propeller's GetTask/s):",
        "",
        *_table(
            [
                "live jobs",
                "Propeller's GetTask/s",
                "reference external calls/s",
                "ours external calls/s",
                "ours / reference",
                "a finished job unseen for up to: ours / reference",
            ],
            computed,
        ),
    ]
    measured_worse = [
        f"{o['external_rate'] / r['external_rate']:,.1f}x at {o['jobs']:,} jobs"
        for o in ours
        for r in ref
        if r["jobs"] == o["jobs"]
        and r["external_rate"]
        and o["external_rate"] > 1.05 * r["external_rate"]
    ]
    if worse or measured_worse:
        lines += [
            "",
            "**At Propeller's cadence ours makes more external calls than the reference, not "
            "fewer**: "
            + "; ".join(measured_worse + worse)
            + ". Ours polls each job on its connector's interval whether Propeller asks or "
            "not, while past the 10 QPS cap Propeller asks each task less often than that; "
            "what the extra calls buy is a finish seen within the poll interval instead of "
            "Propeller's turn, and GetTasks answered without an external call. Under the cap "
            "both make about one call per task per resync period.",
        ]
    return lines


def _workers(workers: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for key, by_count in workers.items():
        rpc = "GetTask" if key.startswith(("lifecycle", "get")) else "CreateTask"
        labels = sorted(by_count, key=lambda name: int(name.split()[0]))
        for name in labels:
            row = by_count[name]
            rows.append(
                [
                    key,
                    name,
                    f"{rpc[:-4]} {_f(_rpc(row, rpc, 'rps'))}/s",
                    f"{_f(_rpc(row, rpc, 'p50_ms'), 1)} / {_f(_rpc(row, rpc, 'p99_ms'), 1)}",
                    _f(row["cpu_per_request_us"]),
                    f"{_f(100 * row['server_cpu_util'])}%",
                    _f(row["peak_rss_mib"]),
                    row.get("worker_cpu_split") or "one process",
                    str(row["errors"]),
                ]
            )
        if len(labels) >= 2:
            one, more = by_count[labels[0]], by_count[labels[-1]]
            rows.append(
                [
                    key,
                    f"**{labels[-1].split()[0]} / {labels[0].split()[0]}**",
                    _ratio(_rpc(more, rpc, "rps"), _rpc(one, rpc, "rps")),
                    _ratio(_rpc(more, rpc, "p99_ms"), _rpc(one, rpc, "p99_ms")),
                    _ratio(more["cpu_per_request_us"], one["cpu_per_request_us"]),
                    _ratio(more["server_cpu_util"], one["server_cpu_util"]),
                    "",
                    "",
                    "",
                ]
            )
    header = [
        "scenario",
        "serve --workers",
        "RPC/s",
        "p50 / p99 ms",
        "server CPU us/request (all processes)",
        "server CPU (% of one core)",
        "peak RSS MiB (sum)",
        "CPU split between workers",
        "errors",
    ]
    return [
        *_table(header, rows),
        "",
        "One durable PostgreSQL (fsync on), a fresh database per measurement; the load over "
        "one gRPC connection per 8 load workers (SO_REUSEPORT spreads connections, not "
        "requests); CPU and RSS summed over the server's processes (with 2 workers: the "
        "supervising process and both workers); the split: each worker's share of the "
        "workers' CPU, which shows how evenly the kernel spread the connections.",
    ]


def render(results: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    meta = results["meta"]
    results.setdefault("parts", ["load", "scale", "journal"])
    lines = [
        f"Run {meta['date']} on {meta['machine']}; command `{meta['command']}` "
        f"({meta['seconds'] / 60:.1f} min).",
        f"Code measured: {meta['source']}. Versions: {meta['versions']}.",
        "",
        "### Targets (issue 16)",
        "",
        *_table(["figure", "target", "measured", ""], _targets(results)),
    ]
    other = _other_figures(results["load"])
    if other:
        lines += ["", "### Other figures", "", *_table(["figure", "target", "measured", ""], other)]
    sizing = _sizing(results["scale"])
    if sizing:
        lines += ["", "### Sizing: live jobs vs RSS and CPU (our server, one process)", "", *sizing]
    if results.get("cadence"):
        lines += [
            "",
            "### External calls at Propeller's cadence (GetTask every 30 s per task, 10 QPS)",
            "",
            *_cadence(results["cadence"]),
        ]
    if results.get("workers"):
        lines += [
            "",
            "### serve --workers: one process vs two (PostgreSQL journal)",
            "",
            *_workers(results["workers"]),
        ]
    elif "workers" in results["parts"]:
        lines += ["", "### serve --workers", "", "Not run: no PostgreSQL server binaries."]
    if results["load"]:
        lines += ["", "### Load runs", "", *_load_detail(results["load"])]
    if results["scale"]:
        lines += ["", "### Scale runs (our server)", "", *_scale_detail(results["scale"])]
    if results["journal"]:
        lines += ["", "### Journal commits", "", *_journal_detail(results["journal"])]
    return "\n".join(lines) + "\n"
