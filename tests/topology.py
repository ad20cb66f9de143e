"""The team deployment of docker/compose.yaml as local processes, for the fault and backup tests
(tests/deploy/) and bench/faults.py: its own PostgreSQL (initdb into a temporary
folder), its own Redis, an S3-compatible endpoint (moto's server, durable: tests/s3_endpoint.py), gunicorn, Celery workers on
`model` and `default`, and beat. Every process can be started, killed (-9 by default) and
restarted; `wait_ready` waits until it answers. As compose's `restart: unless-stopped` does, a
process that exits on its own (a Celery worker's watchdog, engine/worker_watchdog.py) is started
again within a second; one the test killed stays down until the test restarts it.

It never touches the machine's shared PostgreSQL (5432) or Redis (6379): ports are free loopback
ports, the data lives under one temporary folder, and `stop()` ends only the processes it started.

    topo = Topology()
    topo.start_all()               # postgres, redis, s3, migrate, web, worker-model, worker-default, beat
    topo.kill("worker-model"); topo.restart("worker-model")
    topo.python("tests.topology_world", "check", ...)   # a module run with the topology's environment
    topo.stop()

PostgreSQL runs as the `postgres` system user when this process is root (initdb refuses root),
with fsync off: a killed process loses nothing the OS has (only a machine crash would), and the
tests run on a shared, loaded machine.
"""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
BUCKET = "engine"
S3_KEY, S3_SECRET = "topology", "topology-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def pg_bin(name: str) -> str:
    """A PostgreSQL binary of the newest installed version (Debian's layout), else from PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (scripts/ensure_services.sh installs it)")
    return path


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict
    log: Path
    cwd: Path = ROOT
    user: str | None = None  # run as this system user (PostgreSQL under root)
    popen: subprocess.Popen | None = None
    starts: int = 0
    revivals: int = 0  # starts by the supervisor, after the process exited on its own
    held_down: bool = False  # killed by the test, which restarts it
    kills: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.starts += 1
        out = open(self.log, "ab")
        out.write(f"\n==== start {self.starts} at {time.strftime('%H:%M:%S')}\n".encode())
        out.flush()
        kwargs = {}
        if self.user:
            pw = pwd.getpwnam(self.user)
            kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        # Its own process group: a kill reaches the whole service (a postmaster and its backends,
        # a Celery worker and its pool), as when a container dies.
        self.popen = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)
        out.close()

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)  # the group is ours: start_new_session above
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive:
            self.signal_group(signal.SIGKILL)  # leftovers of a killed leader
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.popen.wait(10)
        self.signal_group(signal.SIGKILL)

    def kill(self) -> None:
        """kill -9 of the whole service (leader and children)."""
        self.kills.append(time.strftime("%H:%M:%S"))
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)


class Topology:
    """docker/compose.yaml's services as processes on loopback; see the module docstring."""

    def __init__(self, *, web_workers: int = 2, web_threads: int = 2, folder: str | None = None,
                 keep: bool = False):
        self.dir = Path(folder or tempfile.mkdtemp(prefix="engine-topology-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)  # PostgreSQL's user reaches its folder inside
        self.keep = keep
        self.web_workers, self.web_threads = web_workers, web_threads
        self.pg_port, self.redis_port, self.s3_port, self.web_port = (free_port() for _ in range(4))
        self.pg_user = "postgres" if os.geteuid() == 0 else None
        self.database = "engine"
        self.procs: dict[str, Proc] = {}
        self._lock = threading.Lock()  # one starter at a time: the test or the supervisor
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    # ------------------------------------------------------------------ environment
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def database_url(self, name: str | None = None) -> str:
        return f"postgres://postgres@127.0.0.1:{self.pg_port}/{name or self.database}"

    def env(self, **overrides: str) -> dict:
        """docker/env.example with this topology's addresses: what web, workers and beat read."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CACHE_", "CELERY_", "S3_"))}
        env.update(
            SECRET_KEY="topology-only-secret-key", DEBUG="0", ALLOWED_HOSTS="127.0.0.1,localhost",
            DJANGO_SETTINGS_MODULE="engine.settings", LOG_LEVEL="WARNING",
            DATABASE_URL=self.database_url(), CELERY_BROKER_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            CACHE_URL=f"redis://127.0.0.1:{self.redis_port}/1",
            S3_BUCKET=BUCKET, S3_ENDPOINT_URL=self.s3_url, S3_ACCESS_KEY_ID=S3_KEY, S3_SECRET_ACCESS_KEY=S3_SECRET,
            VAR_DIR=str(self.dir / "var"), MEDIA_ROOT=str(self.dir / "var" / "media"),
            WEB_BIND=f"127.0.0.1:{self.web_port}", WEB_WORKERS=str(self.web_workers),
            WEB_THREADS=str(self.web_threads), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
            # The lost-work sweep at the scale of a test: a sweep every 5 s, heartbeats every 2 s,
            # a 5 s margin and a 20 s limit for an item's generation (its items take well under 1 s),
            # so work lost with a killed worker comes back in about 30 s (snapshot builds) to
            # 60 s (generation), not minutes (engine.lost_work; docs/operations.md).
            LOST_WORK_SWEEP_S="5", LOST_WORK_MARGIN_S="5", TASK_HEARTBEAT_S="2", GENERATION_TIME_LIMIT_S="20",
            # A worker that stops taking tasks with its queue full exits after 40 s (not 120 s) and
            # the supervisor starts it again: longer than Celery's reconnection backoff (30 s at most).
            WORKER_STALL_S="40",
        )
        env.update(overrides)
        return env

    def _add(self, name: str, argv: list[str], *, env: dict | None = None, user: str | None = None) -> Proc:
        proc = Proc(name, argv, env if env is not None else self.env(), self.dir / f"{name}.log", user=user)
        self.procs[name] = proc
        return proc

    # ------------------------------------------------------------------ the services
    def start_postgres(self) -> None:
        data = self.dir / "pgdata"
        if not data.exists():
            data.mkdir()
            if self.pg_user:
                pw = pwd.getpwnam(self.pg_user)
                os.chown(data, pw.pw_uid, pw.pw_gid)
            self._run_as_pg([pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                             "--locale=C", "-N"])
        self._add("postgres", [pg_bin("postgres"), "-D", str(data), "-p", str(self.pg_port), "-k", str(data),
                               "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
                               "-c", "shared_buffers=64MB"],
                  env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"}, user=self.pg_user).start()
        self.wait_ready("postgres")
        if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"):
            self.psql(f"CREATE DATABASE {self.database}")

    def _run_as_pg(self, argv: list[str]) -> None:
        kwargs = {}
        if self.pg_user:
            pw = pwd.getpwnam(self.pg_user)
            kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        subprocess.run(argv, check=True, capture_output=True, cwd=self.dir, **kwargs)

    def psql(self, statement: str, database: str = "postgres") -> str:
        out = subprocess.run([pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
                              "-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", statement],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def start_redis(self) -> None:
        (self.dir / "redis").mkdir(exist_ok=True)
        # Append-only file: a killed Redis keeps the queued tasks it acknowledged (docker/compose.yaml too).
        self._add("redis", [shutil.which("redis-server") or "redis-server", "--port", str(self.redis_port),
                            "--bind", "127.0.0.1", "--dir", str(self.dir / "redis"), "--save", "",
                            "--appendonly", "yes", "--protected-mode", "no"],
                  env={"PATH": os.environ.get("PATH", "")}).start()
        self.wait_ready("redis")

    def start_s3(self) -> None:
        # moto's server, durable (tests/s3_endpoint.py): a killed and restarted endpoint keeps its bucket.
        self._add("s3", [sys.executable, "-m", "tests.s3_endpoint", "--data", str(self.dir / "s3"),
                         "-H", "127.0.0.1", "-p", str(self.s3_port)]).start()
        self.wait_ready("s3")
        self.s3_client().create_bucket(Bucket=BUCKET)

    def s3_client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_url, aws_access_key_id=S3_KEY,
                            aws_secret_access_key=S3_SECRET, region_name="us-east-1")

    def migrate(self) -> None:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env=self.env(), cwd=ROOT,
                       check=True, capture_output=True)

    def start_web(self) -> None:
        self._add("web", [str(VENV_BIN / "gunicorn"), "engine.wsgi:application", "-c", "engine/gunicorn_conf.py",
                          "--log-level", "warning", "--graceful-timeout", "5"]).start()
        self.wait_ready("web")

    def start_worker(self, queue: str, *, concurrency: int = 1) -> None:
        name = f"worker-{queue}"
        self._add(name, [str(VENV_BIN / "celery"), "-A", "engine", "worker", "-Q", queue, "--concurrency",
                         str(concurrency), "-l", "INFO", "-n", f"{queue}@topology", "--without-gossip",
                         "--without-mingle"]).start()
        self.wait_ready(name)

    def start_beat(self) -> None:
        self._add("beat", [str(VENV_BIN / "celery"), "-A", "engine", "beat", "-l", "INFO",
                           "-s", str(self.dir / "beat-schedule")]).start()

    def start_all(self, *, workers: bool = True) -> "Topology":
        self.start_postgres()
        self.start_redis()
        self.start_s3()
        self.migrate()
        self.start_web()
        if workers:
            self.start_worker("model")
            self.start_worker("default")
            self.start_beat()
        self.supervise()
        return self

    # ------------------------------------------------------------------ readiness, faults
    def wait_ready(self, name: str, timeout: float = 120.0) -> None:
        """Until the service answers: a query, a PING, an HTTP answer, a worker's 'ready' line."""
        deadline = time.monotonic() + timeout
        proc = self.procs[name]
        while time.monotonic() < deadline:
            if not proc.alive:
                raise RuntimeError(f"{name} exited ({proc.popen.returncode}); see {proc.log}")
            if self._ready(name):
                return
            time.sleep(0.3)
        raise RuntimeError(f"{name} not ready after {timeout:.0f} s; see {proc.log}")

    def _ready(self, name: str) -> bool:
        if name == "postgres":
            return subprocess.run([pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-q"]).returncode == 0
        if name == "redis":
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False
        if name in ("s3", "web"):
            import requests

            url = self.s3_url if name == "s3" else self.base_url + "/api/v1/"
            try:
                requests.get(url, timeout=3)
                return name == "s3" or len(self.web_worker_pids()) >= self.web_workers
            except requests.RequestException:
                return False
        if name.startswith("worker-"):
            text = self.procs[name].log.read_text(errors="replace")
            return text.rsplit("==== start", 1)[-1].find(" ready.") >= 0
        return True

    def web_worker_pids(self) -> list[int]:
        """The gunicorn master's children, from /proc (no procps needed)."""
        master, pids = self.procs["web"].popen.pid, []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = open(stat).read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:  # fields after the name: state, ppid, ...
                pids.append(int(stat.split("/")[2]))
        return sorted(pids)

    def kill_web_worker(self) -> int:
        """kill -9 of one gunicorn worker (the master forks a new one); its pid."""
        pid = self.web_worker_pids()[0]
        os.kill(pid, signal.SIGKILL)
        self.procs["web"].kills.append(time.strftime("%H:%M:%S"))
        return pid

    def kill(self, name: str) -> None:
        with self._lock:
            self.procs[name].held_down = True
            self.procs[name].kill()

    def restart(self, name: str) -> None:
        proc = self.procs[name]
        with self._lock:
            if proc.alive:
                proc.stop()
            proc.start()
            proc.held_down = False
        if name != "beat":
            self.wait_ready(name)

    def supervise(self) -> None:
        """From now on, start again every process that exits on its own (compose's restart policy)."""
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._revive_exited, name="topology-supervisor", daemon=True)
            self._supervisor.start()

    def _revive_exited(self) -> None:
        while not self._stopping.wait(1.0):
            with self._lock:
                for proc in self.procs.values():
                    if proc.popen is not None and not proc.alive and not proc.held_down:
                        proc.signal_group(signal.SIGKILL)  # what the exited leader left
                        proc.revivals += 1
                        proc.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(5)
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ code inside the deployment
    def python(self, module: str, *args: str, env: dict | None = None, timeout: float = 600) -> dict:
        """`python -m module args...` with the topology's environment; its last stdout line as JSON."""
        out = subprocess.run([sys.executable, "-m", module, *args], env=env or self.env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{module} {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    # ------------------------------------------------------------------ backup and restore
    def pg_dump(self, path: Path) -> None:
        """The database in pg_dump's custom format (what docs/operations.md's backup runs)."""
        subprocess.run([pg_bin("pg_dump"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
                        "-Fc", "-f", str(path), self.database], check=True, capture_output=True)

    def pg_restore(self, path: Path, database: str) -> None:
        self.psql(f"CREATE DATABASE {database}")
        subprocess.run([pg_bin("pg_restore"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
                        "--no-owner", "--exit-on-error", "-d", database, str(path)], check=True, capture_output=True)

    def bucket_download(self, bucket: str, folder: Path) -> int:
        """Every object of the bucket into folder/<key> (as `aws s3 sync s3://bucket folder`); their count."""
        client, n = self.s3_client(), 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                target = folder / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, obj["Key"], str(target))
                n += 1
        return n

    def bucket_upload(self, folder: Path, bucket: str) -> int:
        """folder/<key> into a new bucket (as `aws s3 sync folder s3://bucket`); the count."""
        client, n = self.s3_client(), 0
        client.create_bucket(Bucket=bucket)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            client.upload_file(str(path), bucket, path.relative_to(folder).as_posix())
            n += 1
        return n
