"""A kept, server-side-binding cursor for written-out statements on hot paths (PostgreSQL).

Building a statement with the ORM costs about half a millisecond of Python; a hot path (the
token look-up of every API request, the annotation queue in `annotation/sql.py`) writes its
statements out once and runs them through `cursor()`: server-side binding, so that psycopg
prepares each one on its connection after `prepare_threshold` runs (the DATABASES OPTIONS in
engine/settings.py) and PostgreSQL no longer parses and plans it. They still go through
Django's cursor wrapper, so that query logging and the query-count tests see them, and errors
arrive as django.db errors (IntegrityError and so on).
"""
from __future__ import annotations

import functools

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections


@functools.cache
def is_postgresql() -> bool:
    """The default database's backend (fixed for the process; asked on every hot-path call)."""
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


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


def fetchone(statement: str, params) -> tuple | None:
    """Run a written-out statement on the kept cursor; its first row."""
    cur = cursor()
    cur.execute(statement, params)
    return cur.fetchone()
