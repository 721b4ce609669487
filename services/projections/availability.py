"""When a PostgreSQL error means the database is not there (an outage), not a bad request.

The worker waits an outage out instead of dead-lettering; the query API answers 503
instead of 500. Both judge errors by this one rule.
"""

from __future__ import annotations

import asyncpg


class DatabaseUnavailableError(Exception):
    """No connection to PostgreSQL could be had: an outage, whatever PostgreSQL answered."""


#: SQLSTATE classes of PostgreSQL errors that are the server's state, not the request's:
#: connection exceptions, insufficient resources, operator intervention (shutdown,
#: starting up), system errors; and rollbacks (serialization failure, deadlock).
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})


def is_database_outage(exc: BaseException) -> bool:
    """True when an error means PostgreSQL is unreachable or busy."""
    # OSError: refused or reset connections, timeouts; InterfaceError: a connection
    # closed under us; InternalClientError: what asyncpg raises on a connection the server
    # terminated in the middle of an operation (seen when PostgreSQL restarts under load).
    outage = (
        OSError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        DatabaseUnavailableError,
    )
    if isinstance(exc, outage):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return False
