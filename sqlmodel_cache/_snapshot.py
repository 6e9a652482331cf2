"""The snapshot rule: may a row read now be published to the cache?

A fill is safe only if the SELECT's snapshot is taken after the reader's lease. That
holds when the SELECT starts a transaction, and under READ COMMITTED / autocommit, where
every statement takes a new snapshot. We read this from the driver's client-side state:
asking the server (``Connection.get_isolation_level()``) would cost a round trip.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy.engine import Connection

__all__ = ["snapshot_is_fresh"]

_PER_STATEMENT_SNAPSHOT: Final = frozenset({"READ COMMITTED", "READ UNCOMMITTED", "AUTOCOMMIT"})


def _level_takes_fresh_snapshots(level: object) -> bool:
    if level is None:
        return False
    name = getattr(level, "name", level)
    return str(name).replace("_", " ").upper() in _PER_STATEMENT_SNAPSHOT


def _psycopg_fresh(dbapi_conn: Any, conn: Connection) -> bool:
    from psycopg.pq import TransactionStatus

    if dbapi_conn.autocommit or dbapi_conn.info.transaction_status == TransactionStatus.IDLE:
        return True
    return _level_takes_fresh_snapshots(dbapi_conn.isolation_level or conn.default_isolation_level)


def _sqlite_fresh(dbapi_conn: Any, conn: Connection) -> bool:
    # SQLite isolates like SERIALIZABLE: only a statement outside a transaction is fresh.
    return not dbapi_conn.in_transaction


def _generic_fresh(conn: Connection) -> bool:
    level = conn.get_execution_options().get("isolation_level") or conn.default_isolation_level
    return _level_takes_fresh_snapshots(level)


def connection_is_fresh(conn: Connection) -> bool:
    """Will the next statement on ``conn`` see everything committed before it starts?"""
    dbapi_conn = conn.connection.dbapi_connection
    module = type(dbapi_conn).__module__
    if module.startswith("psycopg"):
        return _psycopg_fresh(dbapi_conn, conn)
    if module.startswith("sqlite3"):
        return _sqlite_fresh(dbapi_conn, conn)
    return _generic_fresh(conn)


def snapshot_is_fresh(session: Any, mapper: Any) -> bool:
    """Whether a SELECT that ``session`` runs next for ``mapper`` takes a new snapshot."""
    if session.get_transaction() is None:
        return True  # the SELECT will begin the transaction
    return connection_is_fresh(session.connection(bind_arguments={"mapper": mapper}))
