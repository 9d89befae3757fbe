"""The configuration reference is generated from the parsers and committed: prove it is
current, that every documented variable is honoured, and that the other documents name no
flag or variable that does not exist.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from supervisor.cli import ENVIRONMENT, Settings, build_parser
from supervisor.cli.config_docs import DOC_PATH, OTHER_ENVIRONMENT, render

ROOT = Path(__file__).resolve().parent.parent
#: Documents and deployment files that mention flags and environment variables.
MENTIONS = [
    ROOT / "README.md",
    ROOT / "docs" / "operations.md",
    ROOT / "docs" / "switching-flyte2.md",
    ROOT / "docs" / "recovery-testing.md",
    ROOT / "Dockerfile",
    ROOT / "deploy" / "kubernetes.yaml",
    ROOT / "deploy" / "kubernetes-replicas.yaml",
]


def test_the_configuration_reference_is_current() -> None:
    assert DOC_PATH.read_text() == render(), "run: python -m supervisor.cli.config_docs"


#: flag -> (a value for its variable, what ``serve`` then sees)
SAMPLES: dict[str, tuple[str, Any]] = {
    "--journal": ("sqlite:///elsewhere.db", "sqlite:///elsewhere.db"),
    "--host": ("127.0.0.2", "127.0.0.2"),
    "--port": ("1234", 1234),
    "--modules": ("a.b, c", ("a.b", "c")),
    "--entry-points": ("no", False),
    "--grace": ("2.5", 2.5),
    "--max-message-bytes": ("65536", 65536),
    "--idle-timeout": ("off", None),
    "--stream-send-timeout": ("off", None),
    "--keepalive": ("30", 30.0),
    "--tls-cert": ("cert.pem", "cert.pem"),
    "--tls-key": ("key.pem", "key.pem"),
    "--tls-client-ca": ("ca.pem", "ca.pem"),
    "--metrics-port": ("off", None),
    "--log-level": ("debug", "DEBUG"),
    "--log-format": ("json", "json"),
    "--ui": ("yes", True),
    "--meta-key": ("a-key-of-sixteen-bytes", "a-key-of-sixteen-bytes"),
    "--meta-key-file": ("/run/secrets/meta-key", "/run/secrets/meta-key"),
    "--adopt-unsigned": ("yes", True),
    "--standby": ("yes", True),
    "--heartbeat-interval": ("0.5", 0.5),
    "--dead-after": ("4", 4.0),
    "--adopt-batch": ("100", 100),
    "--workers": ("4", 4),
    "--connector-poll-interval": ("process=1,echo=2.5", (("process", 1.0), ("echo", 2.5))),
}


def serve_settings(environ: dict[str, str], *argv: str) -> Settings:
    return Settings.from_args(build_parser(environ).parse_args(["serve", *argv]))


def test_every_variable_has_a_sample() -> None:
    assert set(SAMPLES) == set(ENVIRONMENT)


@pytest.mark.parametrize("flag", sorted(ENVIRONMENT))
def test_every_variable_sets_its_flags_default(flag: str) -> None:
    raw, expected = SAMPLES[flag]
    field = flag.removeprefix("--").replace("-", "_")
    assert getattr(serve_settings({ENVIRONMENT[flag]: raw}), field) == expected
    assert getattr(serve_settings({}), field) == getattr(Settings(), field)


def test_a_flag_wins_over_its_variable() -> None:
    assert serve_settings({"SUPERVISOR_PORT": "1"}, "--port", "2").port == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SUPERVISOR_PORT", "eighty"),
        ("SUPERVISOR_METRICS_PORT", "70000"),
        ("SUPERVISOR_LOG_FORMAT", "xml"),
        ("SUPERVISOR_ENTRY_POINTS", "maybe"),
    ],
)
def test_a_bad_variable_is_an_error_naming_the_flag(
    variable: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        serve_settings({variable: value})
    assert exit_.value.code == 2
    flag = next(f for f, v in ENVIRONMENT.items() if v == variable)
    assert f"argument {flag}" in capsys.readouterr().err


def test_metrics_port_zero_picks_a_free_port() -> None:
    assert serve_settings({}, "--metrics-port", "0").metrics_port == 0


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _flags(child)
    return found


@pytest.mark.parametrize("path", MENTIONS, ids=lambda p: p.name)
def test_documents_name_only_variables_that_exist(path: Path) -> None:
    known = set(ENVIRONMENT.values()) | {name for name, _, _ in OTHER_ENVIRONMENT}
    mentioned = set(re.findall(r"\bSUPERVISOR_[A-Z_]+\b", path.read_text()))
    assert mentioned - known == set()


def mentioned_flags(text: str) -> set[str]:
    """Flags given to our commands: after ``supervisor`` on a command line, or a code span
    that starts with a flag."""
    flag = r"(?<![\w-])--[a-z][a-z_-]*"
    found = set(re.findall(r"`(--[a-z][a-z_-]*)", text))
    for line in text.splitlines():
        command = re.search(r"(?:-m[\"', ]+supervisor|\./dev serve)(.*)", line)
        if command is not None:
            found |= set(re.findall(flag, command.group(1)))
    return found


@pytest.mark.parametrize("path", MENTIONS, ids=lambda p: p.name)
def test_documents_name_only_flags_that_exist(path: Path) -> None:
    known = _flags(build_parser({})) | {"--help"}
    assert mentioned_flags(path.read_text()) - known == set()


def test_flags_are_found_where_documents_give_them() -> None:
    text = (
        "run `--live` or python -m supervisor journal ls --older-than 1h\n"
        '["python", "-m", "supervisor", "--x"]'
    )
    assert mentioned_flags(text) == {"--live", "--older-than", "--x"}
