"""Generate betterproto2 code for the flyteidl2 connector API from installed descriptors.

The ``flyteidl2`` wheel ships compiled file descriptors but no ``.proto`` text, so this
script builds a ``CodeGeneratorRequest`` by hand: it walks the dependency closure of
``flyteidl2/connector/service.proto`` (dependencies first), adds each file's serialized
descriptor (keeping custom options), and pipes the request into the
``protoc-gen-python_betterproto2`` plugin. The plugin's output is written under
``proto/flyteproto/``; its top-level package ``flyteidl2`` is nested there so that it never
shadows the official ``flyteidl2`` package.

Usage::

    python proto/generate.py            # regenerate in place
    python proto/generate.py --check    # exit 1 if the committed code is stale
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from google.protobuf.descriptor import FileDescriptor

HERE = Path(__file__).resolve().parent
PACKAGE = "flyteproto"
OUTPUT = HERE / PACKAGE
PLUGIN = "protoc-gen-python_betterproto2"
PLUGIN_OPTIONS = "server_generation=async,client_generation=async"
ROOT_PROTOS = ("flyteidl2.connector.service_pb2",)

INIT_TEXT = '''"""betterproto2 code generated from flyteidl2's descriptors by ``proto/generate.py``.

Do not edit: run ``python proto/generate.py`` instead.
"""
'''


def _closure(roots: list[FileDescriptor]) -> Iterator[FileDescriptor]:
    """Yield every file in the dependency closure of ``roots``, dependencies first."""
    seen: set[str] = set()

    def visit(fd: FileDescriptor) -> Iterator[FileDescriptor]:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            yield from visit(dep)
        yield fd

    for root in roots:
        yield from visit(root)


def build_request() -> plugin_pb2.CodeGeneratorRequest:
    import importlib

    roots = [importlib.import_module(name).DESCRIPTOR for name in ROOT_PROTOS]
    request = plugin_pb2.CodeGeneratorRequest(parameter=PLUGIN_OPTIONS)
    for fd in _closure(roots):
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(fd.serialized_pb)
        proto.source_code_info.SetInParent()
        request.proto_file.append(proto)
        if not fd.name.startswith("google/protobuf/"):
            request.file_to_generate.append(fd.name)
    return request


def run_plugin(request: plugin_pb2.CodeGeneratorRequest) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    # The plugin formats its output with ruff, found on PATH: use this environment's.
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    plugin = shutil.which(PLUGIN, path=env["PATH"]) or PLUGIN
    # Run outside the repository so that our own ruff settings don't restyle the output.
    with tempfile.TemporaryDirectory() as neutral:
        completed = subprocess.run(
            [plugin],
            input=request.SerializeToString(),
            capture_output=True,
            check=False,
            env=env,
            cwd=neutral,
        )
    if completed.returncode:
        raise SystemExit(f"{PLUGIN} failed:\n{completed.stderr.decode(errors='replace')}")
    response = plugin_pb2.CodeGeneratorResponse()
    response.ParseFromString(completed.stdout)
    if response.error:
        raise SystemExit(f"{PLUGIN} failed: {response.error}")
    files = {f.name: f.content for f in response.file}
    files["__init__.py"] = INIT_TEXT
    return files


def write_tree(files: dict[str, str], target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    for name, content in files.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def diff_trees(expected: Path, actual: Path) -> list[str]:
    """Return a unified diff (as lines) between two generated trees."""
    names = {p.relative_to(expected) for p in expected.rglob("*.py")}
    names |= {p.relative_to(actual) for p in actual.rglob("*.py")}
    out: list[str] = []
    for name in sorted(names):
        a = _lines(actual / name)
        b = _lines(expected / name)
        out.extend(
            difflib.unified_diff(a, b, f"committed/{name}", f"generated/{name}", lineterm="")
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale")
    args = parser.parse_args(argv)
    files = run_plugin(build_request())
    if not args.check:
        write_tree(files, OUTPUT)
        print(f"wrote {len(files)} files under {OUTPUT.relative_to(HERE.parent)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / PACKAGE
        write_tree(files, fresh)
        diff = diff_trees(fresh, OUTPUT)
    if diff:
        print("\n".join(diff[:200]))
        print(f"{OUTPUT} is stale: run python proto/generate.py", file=sys.stderr)
        return 1
    print(f"{OUTPUT.relative_to(HERE.parent)} is up to date ({len(files)} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
