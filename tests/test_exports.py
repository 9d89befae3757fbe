"""The public surface: what ``connectors`` and ``supervisor`` export, and the package names."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from types import ModuleType

import pytest

import connectors
import supervisor
import supervisor.actor
import supervisor.cli
import supervisor.edge
import supervisor.journal
import supervisor.observe
import supervisor.service
import supervisor.verify
import supervisor.wire

SUBPACKAGES = [
    supervisor.actor,
    supervisor.cli,
    supervisor.edge,
    supervisor.journal,
    supervisor.observe,
    supervisor.service,
    supervisor.verify,
    supervisor.wire,
]
PACKAGES = [connectors, supervisor, *SUBPACKAGES]


def test_connector_author_imports_work() -> None:
    from connectors import (  # noqa: F401  (the import is the test)
        AsyncConnector,
        ConnectorRegistry,
        Phase,
        Resource,
        ResourceMeta,
    )


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_name_in_all_exists(package: ModuleType) -> None:
    missing = [name for name in package.__all__ if not hasattr(package, name)]
    assert missing == []


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_has_no_duplicates(package: ModuleType) -> None:
    assert len(set(package.__all__)) == len(package.__all__)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_public_name_is_in_all(package: ModuleType) -> None:
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public - set(package.__all__) == set()


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_exported_classes_and_functions_name_the_package_or_its_private_modules(
    package: ModuleType,
) -> None:
    for name in package.__all__:
        value = getattr(package, name)
        module = getattr(value, "__module__", None)
        if isinstance(value, type | ModuleType) or callable(value):
            assert module is not None
            assert module.startswith((package.__name__, "flyteproto.")), (name, module)


def test_the_facade_exports_what_users_and_tests_need() -> None:
    assert sorted(supervisor.__all__) == [
        "ConnectorFailed",
        "ConnectorService",
        "DirectService",
        "InMemoryJournal",
        "InvalidArgument",
        "Journal",
        "JournalError",
        "JournalReader",
        "Listening",
        "Metrics",
        "NotFound",
        "ServiceError",
        "Supervisor",
        "Unavailable",
        "Unimplemented",
        "serve_grpc",
    ]


def test_the_facade_re_exports_the_subpackages_objects() -> None:
    for name in supervisor.__all__:
        homes = [p for p in SUBPACKAGES if name in p.__all__]
        assert all(getattr(p, name) is getattr(supervisor, name) for p in homes), name


@pytest.mark.parametrize("package", SUBPACKAGES, ids=lambda p: p.__name__)
def test_each_subpackage_says_what_it_holds_and_what_it_may_import(package: ModuleType) -> None:
    doc = package.__doc__ or ""
    assert doc.strip(), package.__name__
    assert "sits on" in doc.lower() or "may import" in doc, package.__name__


def test_generated_code_imports_as_flyteproto() -> None:
    from flyteproto.flyteidl2.connector import CreateTaskRequest

    assert CreateTaskRequest.__module__.startswith("flyteproto.flyteidl2.connector")


def test_generated_code_is_not_importable_as_proto() -> None:
    """Whatever ``proto`` is on this path, our generated code is not under it."""
    if importlib.util.find_spec("proto") is not None:
        assert importlib.util.find_spec("proto.flyteidl2") is None


def test_proto_is_google_proto_plus_when_it_is_installed() -> None:
    try:
        importlib.metadata.distribution("proto-plus")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("proto-plus is not installed")
    proto = importlib.import_module("proto")
    assert hasattr(proto, "Message")  # proto-plus's base class, not our generated code
