"""Authentic resource_metas: the ones we hand out carry a MAC (HMAC-SHA256) under our key.

Any client that reaches the port can send a ``resource_meta``; one the journal does not
know would be adopted (polled, cancelled, its logs read with our credentials). So every
meta we hand out is sealed, and an unknown one is adopted only if its seal verifies.

The envelope keeps the connector's JSON decodable (tools and people that read a meta as
JSON still can) and is opaque bytes to Propeller. A JSON object gets one more field at
its end, ``"_mac":"v1.<43 base64url characters>"``; anything else is prefixed with
``mac1.<43 characters>.``. The MAC covers the task type, its version and the connector's
own bytes, so a meta cannot be replayed under another task type.

Bytes from the journal are trusted (we journalled them): ``payload_of`` strips the seal
without checking it, and passes a meta from before sealing (no envelope) through as is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from .._errors import InvalidArgument

__all__ = ["MetaSeal", "payload_of"]

_PURPOSE = b"flyte-connector-supervisor/resource_meta/v1"
_TAG_LENGTH = 43  # base64url of 32 bytes, unpadded
_FIELD = b'"_mac":"v1.'
_FIELD_LENGTH = len(_FIELD) + _TAG_LENGTH + 2  # the field, its closing quote and the brace
_PREFIX = b"mac1."
_PREFIX_LENGTH = len(_PREFIX) + _TAG_LENGTH + 1
MIN_KEY_BYTES = 16


def _split(data: bytes) -> tuple[bytes, bytes] | None:
    """(payload, tag) of a sealed meta; None when ``data`` carries no envelope."""
    if len(data) >= _FIELD_LENGTH + 1 and data.endswith(b'"}'):
        head, field = data[:-_FIELD_LENGTH], data[-_FIELD_LENGTH:]
        if field.startswith(_FIELD):
            tag = field[len(_FIELD) : -2]
            if head == b"{":
                return b"{}", tag
            if head.endswith(b","):
                return head[:-1] + b"}", tag
    if data.startswith(_PREFIX) and data[_PREFIX_LENGTH - 1 : _PREFIX_LENGTH] == b".":
        return data[_PREFIX_LENGTH:], data[len(_PREFIX) : _PREFIX_LENGTH - 1]
    return None


def payload_of(data: bytes) -> bytes:
    """The connector's bytes inside a meta we journalled (sealed or from before sealing)."""
    split = _split(data)
    return data if split is None else split[0]


class MetaSeal:
    """Seals the metas we hand out and opens the ones a client sends.

    ``key`` is shared by every replica of one journal. With ``adopt_unsigned``, a meta
    without an envelope (from Flyte's own connector service, or from before sealing) is
    accepted for a migration window; a meta whose MAC is wrong never is.
    """

    __slots__ = ("_key", "adopt_unsigned")

    def __init__(self, key: bytes, *, adopt_unsigned: bool = False) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the resource_meta key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.adopt_unsigned = adopt_unsigned

    def __repr__(self) -> str:  # never the key
        return f"MetaSeal(adopt_unsigned={self.adopt_unsigned})"

    def _tag(self, task_type: str, version: int, payload: bytes) -> bytes:
        mac = hmac.new(self._key, _PURPOSE, hashlib.sha256)
        for part in (task_type.encode(), str(version).encode(), payload):
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")

    def seal(self, task_type: str, version: int, payload: bytes) -> bytes:
        """``payload`` (the connector's bytes) with our MAC, as handed out to Propeller."""
        tag = self._tag(task_type, version, payload)
        if payload.startswith(b"{") and payload.endswith(b"}") and not payload[-2:-1].isspace():
            body = payload[:-1]
            separator = b"" if body == b"{" else b","
            return body + separator + _FIELD + tag + b'"}'
        return _PREFIX + tag + b"." + payload

    def open(self, task_type: str, version: int, data: bytes) -> bytes:
        """The connector's bytes of a meta a client sent, if we may act on it.

        Errors: InvalidArgument when the MAC is wrong, or missing and unsigned adoption is
        off.
        """
        split = _split(data)
        if split is None:
            if self.adopt_unsigned:
                return data
            raise InvalidArgument(
                "resource_meta carries no MAC: this service did not hand it out "
                "(serve with --adopt-unsigned to adopt jobs of another connector service "
                "or of a version before MACs)"
            )
        payload, tag = split
        if not hmac.compare_digest(tag, self._tag(task_type, version, payload)):
            raise InvalidArgument(
                "resource_meta's MAC does not verify: this service did not hand it out for "
                "this task type (or it was made under another key)"
            )
        return payload
