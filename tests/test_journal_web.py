"""``journal web`` in a real headless Chromium (Debian's ``chromium``; ``.ci/ensure-monitoring``
installs it): the pages render the jobs of a real journal, the filters work, what a job
carries is escaped, and nothing writes. ``WEB_SCREENSHOTS_DIR=docs/img`` saves the
screenshots the docs show (they go to the test's temporary directory otherwise).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trio

from supervisor.journal import Journal, Put
from tests.support.operators import CALL_TIMEOUT, SAMPLE_ARGS, create_request, stub
from tests.support.server import REPO_ROOT, ServerProcess, wait_for
from tests.test_journal_cli import population, record

pytestmark = pytest.mark.slow

BROWSER_TIMEOUT = 60.0
WEB = [sys.executable, "-m", "supervisor", "journal", "web"]
HOSTILE = '<script>document.title="owned"</script><img src=x onerror=alert(1)>'


@dataclasses.dataclass
class Web:
    url: str
    journal: Path


def populate(url: str) -> None:
    links = json.dumps([{"name": "console", "uri": "https://console.example.com/j/ffff6666"}])
    shown = record("ffff6666", 120, message=HOSTILE, log_links=links)

    async def write() -> None:
        async with Journal.open(url) as journal:
            for put in [*population(), Put(shown, "phase")]:
                await journal.write(put)

    trio.run(write)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    journal = tmp_path / "journal.db"
    populate(f"sqlite:///{journal}")
    process = subprocess.Popen(
        [*WEB, "--journal", f"sqlite:///{journal}", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"web view on (http://\S+)", line)
        assert found, line
        yield Web(found.group(1).rstrip("/"), journal)
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()


def chromium(tmp_path: Path, *args: str) -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run .ci/ensure-monitoring")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    result = subprocess.run(
        [binary, *flags, *args],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def dom(tmp_path: Path, url: str) -> str:
    return chromium(tmp_path, "--dump-dom", url)


def job_links(page: str) -> list[str]:
    return re.findall(r'href="/job/([^"]+)"', page)


def screenshot(tmp_path: Path, url: str, name: str) -> Path:
    folder = Path(os.environ.get("WEB_SCREENSHOTS_DIR") or tmp_path)
    path = (folder if folder.is_absolute() else REPO_ROOT / folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    chromium(tmp_path, f"--screenshot={path}", "--window-size=1280,760", url)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def test_the_job_list_shows_every_job_and_the_live_counts(web: Web, tmp_path: Path) -> None:
    page = dom(tmp_path, web.url + "/")
    assert sorted(job_links(page)) == sorted({p.record.job_id for p in population()} | {"ffff6666"})
    assert "4 live" in page
    assert "Local process connector" in page
    screenshot(tmp_path, web.url + "/", "journal-web-jobs.png")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("phase=running", ["ffff6666", "aaaa1111", "dddd4444"]),
        ("connector=LOCAL+PROCESS+CONNECTOR", ["cccc3333", "eeee5555"]),
        ("task_type=process&live=1", ["cccc3333"]),
        ("older_than=30m", ["aaaa1111", "dddd4444"]),
    ],
)
def test_the_filters_are_those_of_journal_ls(
    web: Web, tmp_path: Path, query: str, expected: list[str]
) -> None:
    assert job_links(dom(tmp_path, f"{web.url}/?{query}")) == expected


def test_a_job_page_shows_its_history_and_log_links_escaped(web: Web, tmp_path: Path) -> None:
    page = dom(tmp_path, web.url + "/job/ffff6666")
    assert 'href="https://console.example.com/j/ffff6666"' in page
    assert "<script>document.title" not in page  # rendered as text, not run
    assert "&lt;script&gt;" in page
    assert "<title>job ffff6666" in page
    history = dom(tmp_path, web.url + "/job/aaaa1111")
    assert re.search(r"<td>create_intent</td>.*<td>created</td>", history, re.S)
    assert "reconciled=False" in history
    screenshot(tmp_path, web.url + "/job/aaaa1111", "journal-web-job.png")


def test_the_view_writes_nothing(web: Web, tmp_path: Path) -> None:
    before = hashlib.sha256(web.journal.read_bytes()).hexdigest()
    dom(tmp_path, web.url + "/?live=1")
    request = urllib.request.Request(web.url + "/", method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 501
    refused.value.close()
    assert hashlib.sha256(web.journal.read_bytes()).hexdigest() == before
    wait_for(
        "a 404 for an unknown job", lambda: _status(web.url + "/job/zzzz9999") == 404, timeout=10
    )


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_serve_ui_serves_the_pages_on_the_metrics_port(tmp_path: Path) -> None:
    with ServerProcess([*SAMPLE_ARGS, "--ui", "true"], log_dir=tmp_path) as server:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            stub(channel).CreateTask(create_request("plain", job_id="ui"), timeout=CALL_TIMEOUT)
        base = server.metrics_url.removesuffix("/metrics")
        page = dom(tmp_path, base + "/?live=1")
        metrics = _text(server.metrics_url)
    assert len(job_links(page)) == 1
    assert "Plain connector" in page
    assert "flyte_connector_requests_success_total" in metrics


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())
