"""The resource_meta key test servers share, and metas sealed under it (as if we made them)."""

from __future__ import annotations

from supervisor.wire import MetaSeal

#: Every ServerProcess gets this key (SUPERVISOR_META_KEY), like replicas of one deployment.
TEST_META_KEY = "a-test-resource-meta-key-0123456789abcdef"


def sealed(task_type: str, meta: bytes, version: int = 0) -> bytes:
    """``meta`` as a server with ``TEST_META_KEY`` hands it out."""
    return MetaSeal(TEST_META_KEY.encode()).seal(task_type, version, meta)
