"""Written-out statements for the queue's hot paths (next-item, submit) on PostgreSQL, run
through `engine.db.cursor()` (a kept, server-side-binding cursor: psycopg prepares them; see
there), and the helpers they share.

Everything else (and SQLite, which gets correct, slower ORM paths) stays with the ORM.
"""
from __future__ import annotations

from django.db import connection

from engine.db import cursor, fetchone, is_postgresql  # noqa: F401 - the queue's modules use them as sql.*


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
