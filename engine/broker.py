"""Celery's filesystem transport (the broker of `make run` and `manage.py simulate`), with
messages that appear whole.

kombu's `filesystem` transport creates a message file, then locks and writes it; a worker that
lists the folder in between moves the empty file away, reads "" and dies on a JSONDecodeError
("Unrecoverable error", kombu issue 1551): it stopped a three-round simulation after 11 minutes.
Here a message is written beside its final name and renamed into place (one atomic step on one
filesystem), so a reader sees no file or the whole one.

kombu's reader moves a message out of the folder into the system's temporary folder (unless
processed messages are kept) and skips it, without a word, on any error of that move: a reader
that cannot move messages waits on a full queue forever. Here a reader takes a message by
renaming it within its own folder (the name another reader looks for is gone: one reader gets
it), and an error other than another reader having taken it first is raised.

kombu records a queue's binding in the process's memory first and writes it to the exchange's file
(which every process routes by) after; a thread that publishes in between, or a process whose memory
holds a binding made in another control folder, routes by a file without it and the message goes to
the dead-letter queue ("UndeliverableWarning"), never to a worker. Here a binding is in the file
before its declaration returns, written whole (beside, then renamed) under a lock. `engine.celery` points the
`filesystem://` alias here, so every configuration that names it gets this transport.
"""
from __future__ import annotations

import os
import threading
import uuid
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


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

    _binding_lock = threading.Lock()  # one binding write at a time among this process's threads

    def queue_bind(self, queue, exchange=None, routing_key="", arguments=None, **kwargs):
        exchange = exchange or "amq.direct"
        known = self.state.has_binding(queue, exchange, routing_key)
        super().queue_bind(queue, exchange, routing_key, arguments, **kwargs)
        if known:  # kombu then returns without writing the file, which may still lack the binding
            self._queue_bind(exchange, *self.typeof(exchange).prepare_bind(queue, exchange, routing_key, arguments))

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        file = self._exchange_file(exchange)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            self.control_folder.mkdir(parents=True, exist_ok=True)
            with self._binding_lock, open(f"{file}.lock", "ab") as guard:  # the lock file orders processes
                filesystem.lock(guard, filesystem.LOCK_EX)
                try:
                    table = self.get_table(exchange)
                    if entry in table:
                        return
                    partial = f"{file}.{uuid.uuid4()}.part"
                    with open(partial, "wb") as fh:
                        fh.write(str_to_bytes(dumps([entry, *table])))
                    os.replace(partial, file)
                finally:
                    filesystem.unlock(guard)
        except OSError as exc:
            raise ChannelError(f"Cannot write the binding of queue {queue!r} to {file}: {exc}") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"  # a message's name: "<ms>_<uuid>.<queue>.msg", as kombu's reader reads it
        taker = f"{os.getpid()}-{threading.get_ident()}"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            message = os.path.join(self.data_folder_in, name)
            taken = f"{message}.taken-{taker}"  # no longer a message's name: no other reader takes it
            try:
                os.rename(message, taken)
            except FileNotFoundError:
                continue  # another reader took it first
            except OSError as exc:
                raise ChannelError(f"Cannot take {message!r} from the queue folder: {exc}") from exc
            try:
                with open(taken, "rb") as fh:
                    payload = fh.read()
                if self.store_processed:
                    os.replace(taken, os.path.join(self.processed_folder, name))
                else:
                    os.remove(taken)
            except OSError as exc:
                raise ChannelError(f"Cannot read {taken!r}, taken from the queue folder: {exc}") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel
