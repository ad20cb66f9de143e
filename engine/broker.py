"""Celery's filesystem transport (the broker of `make run` and `manage.py simulate`), with
messages that appear whole.

kombu's `filesystem` transport creates a message file, then locks and writes it; a worker that
lists the folder in between moves the empty file away, reads "" and dies on a JSONDecodeError
("Unrecoverable error", kombu issue 1551): it stopped a three-round simulation after 11 minutes.
Here a message is written beside its final name and renamed into place (one atomic step on one
filesystem), so a reader sees no file or the whole one. `engine.celery` points the
`filesystem://` alias here, so every configuration that names it gets this transport.
"""
from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"  # the reader takes only names ending in exactly ".<queue>.msg"
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
