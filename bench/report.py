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
    return f"{ours / reference:.2f}x"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def _rpc(row: dict[str, Any] | None, rpc: str, field: str) -> float:
    if row is None or rpc not in row:
        return float("nan")
    value: float = row[rpc][field]
    return value


def _load_targets(load: dict[str, dict[str, dict[str, Any]]]) -> list[list[str]]:
    rows: list[list[str]] = []

    def pair(key: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        by_server = load.get(key, {})
        return by_server.get("ours"), by_server.get("reference")

    ours, ref = pair("lifecycle 0ms c64")
    o, r = _rpc(ours, "GetTask", "rps"), _rpc(ref, "GetTask", "rps")
    ok = None if math.isnan(o * r) else o / r >= 1.0
    rows.append(
        [
            "GetTask RPC/s vs reference, 0 ms external latency, concurrency 64",
            ">= 1.0x",
            f"{_f(o)} vs {_f(r)} = {_ratio(o, r)}",
            _verdict(ok),
        ]
    )
    for c in (16, 64):
        ours, ref = pair(f"lifecycle 50ms c{c}")
        o, r = _rpc(ours, "GetTask", "rps"), _rpc(ref, "GetTask", "rps")
        op99, rp99 = _rpc(ours, "GetTask", "p99_ms"), _rpc(ref, "GetTask", "p99_ms")
        ok = None if math.isnan(o * r * op99 * rp99) else (o / r >= 5 and op99 <= rp99 / 5)
        rows.append(
            [
                f"GetTask RPC/s vs reference, 50 ms external latency, concurrency {c}",
                ">= 5x, p99 <= 1/5 of reference",
                f"{_f(o)} vs {_f(r)} = {_ratio(o, r)}; p99 {_f(op99, 1)} ms vs "
                f"{_f(rp99, 1)} ms = {_ratio(op99, rp99)}",
                _verdict(ok),
            ]
        )
    per_get = []
    ratios = []
    for key in ("lifecycle 0ms c64", "lifecycle 50ms c64"):
        ours, ref = pair(key)
        o = ours["external_gets_per_gettask"] if ours else float("nan")
        r = ref["external_gets_per_gettask"] if ref else float("nan")
        ratios.append(o)
        per_get.append(f"{key.split()[1]}: ours {_f(o, 3)}, reference {_f(r, 3)}")
    measured = [x for x in ratios if not math.isnan(x)]
    rows.append(
        [
            "external calls per GetTask",
            "0 (reference: 1)",
            "; ".join(per_get) + " (ours: the actors' own scheduled polls / GetTasks)",
            _verdict(max(measured) < 0.1 if measured else None),
        ]
    )
    for latency in (0, 50):
        ours, ref = pair(f"create {latency}ms c64")
        o, r = _rpc(ours, "CreateTask", "rps"), _rpc(ref, "CreateTask", "rps")
        ok = None if math.isnan(o * r) else o / r >= 0.5
        rows.append(
            [
                f"durable CreateTask/s vs reference's CreateTask/s, {latency} ms, concurrency 64",
                ">= 0.5x",
                f"{_f(o)} vs {_f(r)} = {_ratio(o, r)}",
                _verdict(ok),
            ]
        )
    return rows


def _scale_targets(scale: list[dict[str, Any]]) -> list[list[str]]:
    if not scale:
        return []
    with_window = [s for s in scale if s["window"]]
    rows: list[list[str]] = []
    if with_window:
        top = max(with_window, key=lambda s: s["jobs"])
        ok = top["jobs"] >= 100_000 and top["rss_per_job_bytes"] <= 10_000 and top["lag_p99"] < 1.0
        rows.append(
            [
                "live jobs on one process",
                "100,000, <= 10 KB RSS each, poll lag p99 < 1 s",
                f"{top['jobs']:,} jobs: {_f(top['rss_per_job_bytes'] / 1000, 1)} KB each, "
                f"poll lag p50 {_f(top['lag_p50'] * 1e3, 1)} ms, "
                f"p99 {_f(top['lag_p99'] * 1e3, 1)} ms",
                _verdict(ok),
            ]
        )
    top = max(scale, key=lambda s: s["jobs"])
    seconds = top["resume_all_polled_seconds"]
    done = top["resume_polled"] >= top["jobs"]
    rows.append(
        [
            "resume after kill -9, 100,000 unfinished jobs",
            "all polling again in < 10 s",
            f"{top['jobs']:,} jobs: serving after {_f(top['resume_serving_seconds'], 1)} s, "
            + (f"all polling after {_f(seconds, 1)} s" if done else "not all polled in time"),
            _verdict(top["jobs"] >= 100_000 and done and seconds < 10),
        ]
    )
    return rows


def _journal_targets(journal: list[dict[str, Any]]) -> list[list[str]]:
    if not journal:
        return []
    parts = []
    ok = True
    for backend, target in (("sqlite", 20_000), ("postgresql", 10_000)):
        rates = [j for j in journal if j["backend"] == backend]
        if not rates:
            parts.append(f"{backend}: not run")
            continue
        best = max(rates, key=lambda j: j["rate"])
        ok = ok and best["rate"] >= target
        parts.append(f"{backend} {_f(best['rate'])}/s ({best['writers']:,} writers)")
    return [
        [
            "journal commits",
            ">= 20,000 transitions/s SQLite, >= 10,000/s PostgreSQL",
            "; ".join(parts),
            _verdict(ok),
        ]
    ]


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


def render(results: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    meta = results["meta"]
    lines = [
        f"Run {meta['date']} on {meta['machine']}; command `{meta['command']}` "
        f"({meta['seconds'] / 60:.1f} min).",
        f"Code measured: {meta['source']}. Versions: {meta['versions']}.",
        "",
        "### Targets",
        "",
    ]
    targets = (
        _load_targets(results["load"])
        + _scale_targets(results["scale"])
        + _journal_targets(results["journal"])
    )
    lines += _table(["figure", "target", "measured", ""], targets)
    if results["load"]:
        lines += ["", "### Load runs", "", *_load_detail(results["load"])]
    if results["scale"]:
        lines += ["", "### Scale runs (our server)", "", *_scale_detail(results["scale"])]
    if results["journal"]:
        lines += ["", "### Journal commits", "", *_journal_detail(results["journal"])]
    return "\n".join(lines) + "\n"
