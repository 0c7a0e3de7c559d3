"""One small error hierarchy: transient errors are retried with backoff, permanent ones recorded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc


class NewsflowError(Exception):
    """Base of every error newsflow raises on purpose."""


class TransientError(NewsflowError):
    """The database or broker is unreachable or timed out: try again later."""


class PermanentError(NewsflowError):
    """Trying again will not help: record it and move on."""


class SystemFailure(NewsflowError):
    """The system itself failed (a service stopped, a server did not start), not a file: commands exit
    non-zero."""


class ConfigurationError(NewsflowError):
    """A setting is missing or wrong for what was asked."""


_TRANSIENT = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


@contextmanager
def transient_boundary() -> Iterator[None]:
    """Wrap third-party connection failures as TransientError, keeping the cause."""
    try:
        yield
    except _TRANSIENT as e:
        raise TransientError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
