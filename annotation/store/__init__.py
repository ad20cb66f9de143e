"""The annotation queue's store: every written-out read and write of the hot paths (next-item,
submit) and their row mapping, behind one interface with two implementations:

- `portable.PortableStore`: the ORM, on any database (SQLite: `make run` on a laptop);
- `postgresql.PostgresStore`: written-out, prepared statements on PostgreSQL (teams, benches).

`AnnotationConfig.ready()` chooses one for the process from the default database's backend;
services and selectors call `queue_store()` and contain no backend branches.
"""
from __future__ import annotations

from annotation.store.portable import LeaseTake, PortableStore
from annotation.store.postgresql import PostgresStore

__all__ = ["LeaseTake", "PortableStore", "PostgresStore", "queue_store", "queue_store_choose"]

_chosen: PortableStore | None = None


def queue_store_choose(vendor: str) -> PortableStore:
    """Choose the store for a database backend (Django's `connection.vendor`); once, at start-up."""
    global _chosen
    _chosen = PostgresStore() if vendor == "postgresql" else PortableStore()
    return _chosen


def queue_store() -> PortableStore:
    """The store chosen at start-up."""
    return _chosen
