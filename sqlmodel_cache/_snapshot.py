"""The snapshot rule: owns whether a row read now may be published to the cache.

A fill is safe only if the SELECT's snapshot is taken after the reader's lease. That
holds when the SELECT starts a transaction, and under READ COMMITTED / autocommit, where
every statement takes a new snapshot. We read this from the driver's client-side state:
asking the server (``Connection.get_isolation_level()``) would cost a round trip.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy.engine import Connection

__all__ = ["connection_is_fresh"]

_PER_STATEMENT_SNAPSHOT: Final = frozenset({"READ COMMITTED", "READ UNCOMMITTED", "AUTOCOMMIT"})


def _takes_fresh_snapshots(level: object) -> bool:
    if level is None:
        return False
    name = getattr(level, "name", level)  # psycopg's IsolationLevel enum, or a string
    return str(name).replace("_", " ").upper() in _PER_STATEMENT_SNAPSHOT


def _in_transaction(driver_conn: Any) -> bool | None:
    """The driver's own idea of whether a transaction is open, or ``None`` if unknown."""
    module = type(driver_conn).__module__
    if module.startswith("psycopg"):
        from psycopg.pq import TransactionStatus

        if driver_conn.autocommit:
            return False
        return bool(driver_conn.info.transaction_status != TransactionStatus.IDLE)
    if module.startswith("asyncpg"):
        return bool(driver_conn.is_in_transaction())
    if module.startswith(("sqlite3", "aiosqlite")):
        return bool(driver_conn.in_transaction)
    return None


def connection_is_fresh(conn: Connection) -> bool:
    """Will the next statement on ``conn`` see everything committed before it starts?"""
    pooled = conn.connection
    driver_conn = pooled.driver_connection
    in_transaction = _in_transaction(driver_conn)
    if in_transaction is False:
        return True  # the next statement begins the transaction, and its snapshot
    if type(driver_conn).__module__.startswith(("sqlite3", "aiosqlite")):
        return False  # SQLite isolates like SERIALIZABLE
    level = getattr(pooled.dbapi_connection, "isolation_level", None)
    if level is None:
        level = conn.get_execution_options().get("isolation_level") or conn.default_isolation_level
    return _takes_fresh_snapshots(level)
