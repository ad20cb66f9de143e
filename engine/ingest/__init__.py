"""Ingest: images, depth maps and object masks into a project.

Three ways in (REST upload, zip upload, the `ingest` command), one service underneath:
`readers` turn a folder / COCO / SA-1B source into `ItemInput`s, `validation` checks
every byte of an item, `services.ingest_item` writes it atomically and idempotently.
"""
