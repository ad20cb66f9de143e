"""An inference server for any generator backend, speaking the protocol of `generators/http.py`.

    python -m modelzoo.serve --checkpoint modelzoo/checkpoints/bootstrap.pt --port 8500
    python -m modelzoo.serve --backend mypkg.sam3d:load --checkpoint /models/sam3d --port 8500

One process hosts one model for many Celery workers (their checkpoint record says
``backend: http, config: {"url": "http://gpu-1:8500"}``). Plain Python: no Django.
Requests are served on threads; the model runs one request at a time (a lock), which is
what a single GPU wants; batch size is the request's number of seeds.
"""
from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from modelzoo.files import sha256_file
from modelzoo.generators.base import Generator, GeneratorError
from modelzoo.generators.http import CONTENT_TYPE, PROTOCOL_VERSION, request_decode, response_encode
from modelzoo.generators.registry import import_target, load_generator

log = logging.getLogger("modelzoo.serve")
MAX_REQUEST_BYTES = 256 * 1024 * 1024
MAX_SEEDS = 64


def make_server(generator: Generator, *, host: str = "127.0.0.1", port: int = 0, info: dict | None = None):
    """A ready `ThreadingHTTPServer` (call `serve_forever`); port 0 picks a free port."""
    lock = threading.Lock()
    info = {"status": "ok", "protocol": PROTOCOL_VERSION, "backend": getattr(generator, "backend", "?")} | (info or {})

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a worker reuses its connection
        timeout = 300  # seconds a silent client may hold its connection (and thread)

        def log_message(self, fmt, *args):
            log.debug("%s " + fmt, self.client_address[0], *args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: dict) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def _error(self, status: int, code: str, message: str) -> None:
            self._json(status, {"error": {"code": code, "message": message}})

        def do_GET(self):
            if self.path == "/v1/health":
                self._json(200, info)
            else:
                self._error(404, "not_found", "Use GET /v1/health or POST /v1/generate.")

        def do_POST(self):
            if self.path != "/v1/generate":
                self._error(404, "not_found", "Use GET /v1/health or POST /v1/generate.")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_REQUEST_BYTES:
                self.close_connection = True
                self._error(413 if length else 411, "bad_length",
                            f"Send a body of 1 to {MAX_REQUEST_BYTES} bytes with Content-Length.")
                return
            data = self.rfile.read(length)
            try:
                request = request_decode(data)
                if not 1 <= len(request.seeds) <= MAX_SEEDS:
                    raise GeneratorError(f"Ask for 1 to {MAX_SEEDS} seeds per request.")
            except GeneratorError as exc:
                self._error(400, "invalid", str(exc))
                return
            started = time.perf_counter()
            try:
                with lock:
                    outputs = generator.generate(request)
            except GeneratorError as exc:
                self._error(422, "generation_failed", str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - report, keep serving
                log.exception("generation failed")
                self._error(500, "internal", f"{type(exc).__name__}: {exc}")
                return
            log.info("generated %d candidates in %.3f s", len(outputs), time.perf_counter() - started)
            self._send(200, response_encode(outputs), CONTENT_TYPE)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="Weights file (or folder) the backend loads.")
    parser.add_argument("--backend", default="builtin",
                        help="A registered backend name (builtin) or package.module:loader.")
    parser.add_argument("--config", default="{}", help="JSON options passed to the backend's loader.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = json.loads(args.config)
    if ":" in args.backend:
        generator = import_target(args.backend)(args.checkpoint, config)
    else:
        generator = load_generator(backend=args.backend, path=args.checkpoint, config=config)
    info = {"checkpoint": args.checkpoint}
    if args.checkpoint and not args.checkpoint.endswith("/"):
        try:
            info["sha256"] = sha256_file(args.checkpoint)
        except (IsADirectoryError, FileNotFoundError):
            pass
    server = make_server(generator, host=args.host, port=args.port, info=info)
    log.info("serving %s (%s) on http://%s:%d", args.checkpoint, args.backend, *server.server_address[:2])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
