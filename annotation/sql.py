"""Written-out statements for the queue's hot paths (next-item, submit) on PostgreSQL.

Building a statement with the ORM costs about half a millisecond of Python; these statements
are written out once and run through `cursor()`: server-side binding, so that psycopg prepares
each one on its connection after `prepare_threshold` runs (the DATABASES OPTIONS in
engine/settings.py) and PostgreSQL no longer parses and plans it. They still go through
Django's cursor wrapper, so that query logging and the query-count tests see them, and errors
arrive as django.db errors (IntegrityError and so on).

Everything else (and SQLite, which gets correct, slower ORM paths) stays with the ORM.
"""
from __future__ import annotations

import functools

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections


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
    kept = getattr(db, "_annotation_cursor", None)
    if kept is None or kept[0] is not db.connection or kept[1] != db.queries_logged:
        db.validate_thread_sharing()
        raw = psycopg.Cursor(db.connection)
        wrapped = db.make_debug_cursor(raw) if db.queries_logged else db.make_cursor(raw)
        kept = db._annotation_cursor = (db.connection, db.queries_logged, wrapped)
    return kept[2]


def fetchone(statement: str, params) -> tuple | None:
    cur = cursor()
    cur.execute(statement, params)
    return cur.fetchone()


def float_array(values) -> str:
    """A PostgreSQL float8[] literal, for a parameter cast in the statement (`%s::float8[]`):
    psycopg adapts a long list element by element, a string in one go. repr() round-trips."""
    return "{" + ",".join(map(repr, values)) + "}"


def bool_array(values) -> str:
    """A PostgreSQL bool[] literal (`%s::bool[]`), as `float_array`."""
    return "{" + ",".join(map(_BOOL.__getitem__, values)) + "}"


_BOOL = {True: "t", False: "f"}


def columns(model, alias: str = "") -> str:
    """The model's concrete columns, quoted, in field order (the order `from_db` wants)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + connection.ops.quote_name(f.column) for f in model._meta.concrete_fields)


_FIELDS: dict = {}


def from_row(model, values):
    """A model instance from a row of `columns(model)` (no query, no deferred fields); values
    pass through their fields' `from_db_value` as the ORM does (JSON arrives as text)."""
    fields = _FIELDS.get(model)
    if fields is None:
        concrete = model._meta.concrete_fields
        fields = _FIELDS[model] = ([f.attname for f in concrete],
                                   [(k, f) for k, f in enumerate(concrete) if hasattr(f, "from_db_value")])
    names, converted = fields
    if converted:
        values = list(values)
        for k, field in converted:
            values[k] = field.from_db_value(values[k], None, connection)
    return model.from_db(connection.alias, names, values)
