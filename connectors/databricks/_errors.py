"""What a failed call to the Jobs API raises: transient (retry) or permanent (give up)."""

from __future__ import annotations

import email.utils
import math
import time

from .._errors import PermanentError

__all__ = ["DatabricksRequestError", "DatabricksTransientError", "parse_retry_after"]


class DatabricksTransientError(Exception):
    """A call that may succeed if repeated: 408, 429, 5xx, a network error or a timeout.

    ``retry_after`` is the server's Retry-After in seconds (None when it sent none): the
    least delay before the next call. The supervisor retries ``get`` and ``delete`` with
    its own backoff; a caller that can honour the hint should wait at least this long.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.retry_after = retry_after


class DatabricksRequestError(PermanentError):
    """Databricks refused the request (4xx other than 408 and 429): repeating it won't help."""

    def __init__(self, message: str, *, status: int, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date.

    Decimal seconds ("0.5") are accepted too. None when absent or unreadable; never negative.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
