"""The benchmark harness in its tiny mode: every part runs for seconds, nothing is judged.

Keeps ``bench/`` from rotting. The reference server takes part only when its environment
(``bench/.venv-reference``, made by a full ``python -m bench``) is already there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import main
from bench.servers import reference_env_ready

pytestmark = pytest.mark.slow


def test_tiny_bench_runs_every_part(tmp_path: Path) -> None:
    assert main(["--tiny", "--reference-if-present", "--out", str(tmp_path)]) == 0

    results = json.loads((tmp_path / "results.json").read_text())
    servers = {"ours", "reference"} if reference_env_ready() else {"ours"}
    for scenario in ("lifecycle 0ms c4", "create 0ms c4"):
        assert set(results["load"][scenario]) == servers
        assert results["load"][scenario]["ours"]["errors"] == 0
    lifecycle = results["load"]["lifecycle 0ms c4"]["ours"]
    assert lifecycle["GetTask"]["rps"] > 0
    [scale] = results["scale"]
    assert scale["resume_polled"] == scale["jobs"]
    assert results["journal"][0]["puts"] > 0
    assert "### Targets" in (tmp_path / "report.md").read_text()
