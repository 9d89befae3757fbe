"""Status messages as they go back to clients: bounded and escaped.

A message may echo client strings (a task type, a connector name, a JSON field name) of any
length; hpack's Huffman coding of ``grpc-message`` costs time that grows faster than the
length, on the one event loop that serves every client. So every message leaves here at most
``MAX_MESSAGE_CHARS`` long: its head and tail kept (the tail usually says what is wrong),
the middle replaced by a count, and anything unprintable escaped.
"""

from __future__ import annotations

__all__ = ["MAX_MESSAGE_CHARS", "bounded"]

#: The longest ``grpc-message`` we send.
MAX_MESSAGE_CHARS = 1024
_TAIL = 256


def bounded(message: str) -> str:
    """``message`` escaped and cut to at most MAX_MESSAGE_CHARS characters."""
    if len(message) <= MAX_MESSAGE_CHARS and message.isprintable():
        return message
    head = _escaped(message[:MAX_MESSAGE_CHARS])
    if len(head) >= len(message) and len(head) <= MAX_MESSAGE_CHARS:
        return head
    tail = _escaped(message[-_TAIL:])[-_TAIL:]
    cut = f" [... {len(message)} characters in all ...] "
    return head[: MAX_MESSAGE_CHARS - len(cut) - len(tail)] + cut + tail


def _escaped(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
