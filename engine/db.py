"""Running written-out statements on hot paths, on whichever database the process uses.

Building a statement with the ORM costs about half a millisecond of Python; a hot path (the
token look-up of every API request, the annotation queue's store in `annotation/store/`) writes
its statements out once and runs them here. On PostgreSQL through a kept, server-side-binding
cursor: psycopg prepares each statement on its connection after `prepare_threshold` runs (the
DATABASES OPTIONS in engine/settings.py) and PostgreSQL no longer parses and plans it. Elsewhere
(SQLite) through Django's ordinary cursor. `EngineConfig.ready()` chooses once per process.
Statements still go through Django's cursor wrapper, so that query logging and the query-count
tests see them, and errors arrive as django.db errors (IntegrityError and so on).
"""
from __future__ import annotations

from collections.abc import Callable

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections


def cursor():
    """A Django cursor over a server-side-binding psycopg cursor (PostgreSQL only), one per
    connection, kept for the next statement (do not close it; closing the connection does).

    Parameters are sent apart from the statement text, so that one text is one prepared
    statement: cast parameters where PostgreSQL cannot infer their type (empty arrays, NULLs).
    """
    db = connections[DEFAULT_DB_ALIAS]  # the thread's wrapper, looked up once
    db.ensure_connection()
    kept = getattr(db, "_kept_cursor", None)
    if kept is None or kept[0] is not db.connection or kept[1] != db.queries_logged:
        db.validate_thread_sharing()
        raw = psycopg.Cursor(db.connection)
        wrapped = db.make_debug_cursor(raw) if db.queries_logged else db.make_cursor(raw)
        kept = db._kept_cursor = (db.connection, db.queries_logged, wrapped)
    return kept[2]


def _fetchone_prepared(statement: str, params) -> tuple | None:
    cur = cursor()
    cur.execute(statement, params)
    return cur.fetchone()


def _fetchone_plain(statement: str, params) -> tuple | None:
    with connections[DEFAULT_DB_ALIAS].cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchone()


_fetchone: Callable[[str, object], tuple | None] = _fetchone_plain


def fetchone_choose(vendor: str) -> None:
    """Pick how `fetchone` runs statements for a database backend; once, at start-up."""
    global _fetchone
    _fetchone = _fetchone_prepared if vendor == "postgresql" else _fetchone_plain


def fetchone(statement: str, params) -> tuple | None:
    """Run a written-out statement (%s or %(name)s parameters); its first row."""
    return _fetchone(statement, params)
