"""Start, stop and inspect the local PostgreSQL + Kafka (KRaft) stack for development and tests.

Layout under ``StackConfig.state_dir``::

    stack.lock                 serialises concurrent up/down calls
    logs/                      postgres.log, kafka.out, kafka-*.log, mvn.log, ...
    run/postgres.pid           pid of the postmaster we started
    run/kafka.pid              pid of the Kafka JVM we started
    postgres/data/             our own cluster (never the Debian system cluster)
    postgres/run/              unix socket directory
    kafka/libs-<version>/      broker jars copied by Maven from infra/kafka/pom.xml
    kafka/server.properties    generated broker config
    kafka/cluster.id           KRaft cluster id, kept so restarts reuse formatted storage
    kafka/data/                Kafka log.dirs (also holds the KRaft metadata log)

Usage: ``python -m services.stack.launcher up|down|status``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "StackConfig",
    "StackError",
    "StackInfo",
    "down",
    "ensure_database",
    "main",
    "start_kafka",
    "start_postgres",
    "status",
    "stop_kafka",
    "stop_postgres",
    "up",
]

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_INFRA_DIR = REPO_ROOT / "infra" / "kafka"
KAFKA_POM = KAFKA_INFRA_DIR / "pom.xml"
KAFKA_LOG4J_CONFIG = KAFKA_INFRA_DIR / "log4j2.properties"

PG_SYSTEM_USER = "postgres"
PG_BOOTSTRAP_ROLE = "postgres"
LOG_TAIL_LINES = 40
STOP_GRACE_SECONDS = 20.0
APT_TIMEOUT_SECONDS = 1800.0
MAVEN_TIMEOUT_SECONDS = 900.0
LIBS_MARKER = ".complete"


def _default_state_dir() -> Path:
    """Return the default state directory for the current user."""
    if os.geteuid() == 0:
        # /root is mode 700 and the unprivileged postgres user must traverse the path.
        return Path("/var/lib/kontakt/stack")
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "kontakt" / "stack"


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its state and which ports/credentials it uses."""

    state_dir: Path = field(default_factory=_default_state_dir)
    # Below the kernel's ephemeral range (32768+): a client's source port can never
    # take a server port while the server restarts (TCP self-connect).
    pg_port: int = 25432
    kafka_port: int = 29092
    kafka_controller_port: int = 29093
    pg_user: str = "kontakt"
    pg_password: str = "kontakt"
    pg_database: str = "kontakt"

    @classmethod
    def from_env(cls) -> StackConfig:
        """Build a config from defaults overridden by KONTAKT_STACK_DIR / KONTAKT_*_PORT."""
        env = os.environ
        state = env.get("KONTAKT_STACK_DIR")
        return cls(
            state_dir=Path(state).expanduser() if state else _default_state_dir(),
            pg_port=_env_int("KONTAKT_PG_PORT", 25432),
            kafka_port=_env_int("KONTAKT_KAFKA_PORT", 29092),
            kafka_controller_port=_env_int("KONTAKT_KAFKA_CONTROLLER_PORT", 29093),
        )


def _env_int(name: str, default: int) -> int:
    """Read an integer environment variable, falling back to a default."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise StackError(f"{name}={raw!r} is not an integer") from exc


@dataclass(frozen=True)
class StackInfo:
    """Connection settings of a running stack."""

    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str
    pg_database: str
    kafka_bootstrap: str
    log_dir: Path

    def pg_dsn(self, database: str | None = None) -> str:
        """Return a libpq URL for the given database (default: pg_database)."""
        user = urllib.parse.quote(self.pg_user, safe="")
        password = urllib.parse.quote(self.pg_password, safe="")
        db = urllib.parse.quote(database or self.pg_database, safe="")
        return f"postgresql://{user}:{password}@{self.pg_host}:{self.pg_port}/{db}"

    def as_env(self) -> dict[str, str]:
        """Return the settings as KONTAKT_* environment variables."""
        return {
            "KONTAKT_PG_HOST": self.pg_host,
            "KONTAKT_PG_PORT": str(self.pg_port),
            "KONTAKT_PG_USER": self.pg_user,
            "KONTAKT_PG_PASSWORD": self.pg_password,
            "KONTAKT_PG_DATABASE": self.pg_database,
            "KONTAKT_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
        }


class StackError(RuntimeError):
    """A server could not be installed or started; message includes the reason and the log tail."""


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class _Paths:
    """All file locations derived from a config."""

    root: Path
    logs: Path
    run: Path
    lock: Path
    pg_root: Path
    pg_data: Path
    pg_socket_dir: Path
    pg_pid: Path
    pg_log: Path
    pg_init_log: Path
    kafka_root: Path
    kafka_data: Path
    kafka_props: Path
    kafka_cluster_id: Path
    kafka_pid: Path
    kafka_out: Path
    kafka_server_log: Path
    mvn_log: Path

    @classmethod
    def of(cls, cfg: StackConfig) -> _Paths:
        """Derive the layout from the config's state dir."""
        root = cfg.state_dir.expanduser().resolve()
        logs = root / "logs"
        run = root / "run"
        pg_root = root / "postgres"
        kafka_root = root / "kafka"
        return cls(
            root=root,
            logs=logs,
            run=run,
            lock=root / "stack.lock",
            pg_root=pg_root,
            pg_data=pg_root / "data",
            pg_socket_dir=pg_root / "run",
            pg_pid=run / "postgres.pid",
            pg_log=logs / "postgres.log",
            pg_init_log=logs / "postgres-initdb.log",
            kafka_root=kafka_root,
            kafka_data=kafka_root / "data",
            kafka_props=kafka_root / "server.properties",
            kafka_cluster_id=kafka_root / "cluster.id",
            kafka_pid=run / "kafka.pid",
            kafka_out=logs / "kafka.out",
            kafka_server_log=logs / "kafka-server.log",
            mvn_log=logs / "mvn.log",
        )


def _info(cfg: StackConfig) -> StackInfo:
    """Build the connection settings for a config."""
    return StackInfo(
        pg_host=HOST,
        pg_port=cfg.pg_port,
        pg_user=cfg.pg_user,
        pg_password=cfg.pg_password,
        pg_database=cfg.pg_database,
        kafka_bootstrap=f"{HOST}:{cfg.kafka_port}",
        log_dir=_Paths.of(cfg).logs,
    )


# --------------------------------------------------------------------------- small helpers


def _is_root() -> bool:
    """Tell whether we run as root (PostgreSQL then has to run as the postgres user)."""
    return os.geteuid() == 0


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last lines of a log file, or a note that it does not exist."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    text = "\n".join(data.splitlines()[-lines:])
    return f"--- last {lines} lines of {path} ---\n{text}" if text else f"({path} is empty)"


def _fail(reason: str, *logs: Path) -> StackError:
    """Build a StackError whose message carries the reason and the tails of the given logs."""
    parts = [reason] + [_tail(p) for p in logs]
    return StackError("\n".join(parts))


def _pid_alive(pid: int) -> bool:
    """Tell whether a pid exists and is not a zombie, reaping it if it is our child."""
    with contextlib.suppress(ChildProcessError, OSError):
        # The Kafka JVM is our child when up() and down() run in one process (pytest):
        # reap it so a dead broker does not linger as a zombie that still "exists".
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists but belongs to another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3 (after the parenthesised command name) is the state; Z = zombie, X = dead.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    """Return a process's argv, or [] if unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _read_pid(path: Path) -> int | None:
    """Read a pid from the first line of a pid file."""
    try:
        first = path.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def _write_pid(path: Path, pid: int) -> None:
    """Write a pid file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def _port_accepts(port: int, timeout: float = 0.5) -> bool:
    """Tell whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    """Tell whether 127.0.0.1:port can be bound (nothing else listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR so our own sockets lingering in TIME_WAIT after a restart do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _port_owner(port: int) -> str:
    """Best-effort description of the process listening on a port (via ss)."""
    ss = shutil.which("ss")
    if not ss:
        return ""
    try:
        out = subprocess.run(
            [ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f" ({out.splitlines()[0].strip()})" if out else ""


def _require_free_port(port: int, what: str) -> None:
    """Raise StackError if a port needed by a server we are about to start is taken."""
    if not _port_free(port):
        raise StackError(
            f"{what}: port {HOST}:{port} is already in use by a process that this stack did not "
            f"start{_port_owner(port)}. Stop it or choose another port "
            "(KONTAKT_PG_PORT / KONTAKT_KAFKA_PORT / KONTAKT_KAFKA_CONTROLLER_PORT)."
        )


@contextlib.contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    """Hold an exclusive lock on the state dir so concurrent up/down calls do not race."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.lock.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _terminate(pid: int, grace: float = STOP_GRACE_SECONDS) -> str:
    """SIGTERM a process, wait up to `grace` seconds, then SIGKILL; return what happened."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already gone"
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return "stopped"
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not _pid_alive(pid):
            break
        time.sleep(0.1)
    return f"killed (did not stop within {grace:.0f}s)"


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path | None:
    """Return the newest /usr/lib/postgresql/<major>/bin that has server binaries."""
    candidates: list[tuple[int, Path]] = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            with contextlib.suppress(ValueError):
                candidates.append((int(d.parent.name), d))
    return max(candidates)[1] if candidates else None


def _pg_install(progress: Callable[[str], None], paths: _Paths) -> Path:
    """Locate PostgreSQL server binaries, installing Debian's package if we may."""
    bindir = _pg_bindir()
    if bindir:
        return bindir
    if not _is_root():
        raise StackError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin. "
            "Install them with: sudo apt-get install -y postgresql"
        )
    apt = shutil.which("apt-get")
    if not apt:
        raise StackError("PostgreSQL is not installed and apt-get is not available to install it")
    progress("postgres: not installed, running apt-get install -y postgresql ...")
    log = paths.logs / "apt.log"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with log.open("ab") as out:
        for cmd in (
            [apt, "update"],
            [apt, "install", "-y", "--no-install-recommends", "postgresql"],
        ):
            try:
                rc = subprocess.run(
                    cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=APT_TIMEOUT_SECONDS
                ).returncode
            except subprocess.TimeoutExpired as exc:
                raise _fail(f"postgres: {' '.join(cmd)} timed out", log) from exc
            if rc != 0:
                raise _fail(f"postgres: {' '.join(cmd)} failed with exit code {rc}", log)
    bindir = _pg_bindir()
    if not bindir:
        raise _fail(
            "postgres: apt-get install postgresql finished but no server binaries found", log
        )
    return bindir


def _pg_cmd(args: Sequence[str]) -> list[str]:
    """Prefix a command so it runs as the postgres system user when we are root."""
    if _is_root():
        return ["runuser", "-u", PG_SYSTEM_USER, "--", *args]
    return list(args)


def _pg_owner() -> tuple[int, int] | None:
    """Return (uid, gid) of the postgres system user when running as root, else None."""
    if not _is_root():
        return None
    try:
        pw = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError as exc:
        raise StackError(
            f"running as root but there is no '{PG_SYSTEM_USER}' system user to run PostgreSQL "
            "as (it is created by Debian's postgresql package: apt-get install -y postgresql)"
        ) from exc
    return pw.pw_uid, pw.pw_gid


def _pg_prepare_dirs(paths: _Paths) -> None:
    """Create the PostgreSQL directories with owners/modes the server user can use."""
    owner = _pg_owner()
    for d in (paths.root, paths.logs, paths.run):
        d.mkdir(parents=True, exist_ok=True)
    if owner:
        # Every component above the data dir must be traversable by the postgres user.
        for d in [paths.root, *paths.root.parents]:
            if d == Path("/"):
                break
            if not os.stat(d).st_mode & 0o001:
                raise StackError(
                    f"postgres: the state dir {paths.root} is not reachable by the "
                    f"'{PG_SYSTEM_USER}' user because {d} is not world-traversable; "
                    "set KONTAKT_STACK_DIR to a path such as /var/lib/kontakt/stack"
                )
        with contextlib.suppress(OSError):
            paths.root.chmod(paths.root.stat().st_mode | 0o755)
    for d in (paths.pg_root, paths.pg_socket_dir):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)  # only the server user (and root) may use the trust-auth unix socket
        if owner:
            os.chown(d, *owner)
    paths.pg_log.touch(exist_ok=True)
    if owner:
        # pg_ctl opens the log file as the server user.
        os.chown(paths.pg_log, *owner)


def _pg_conf_text(cfg: StackConfig, paths: _Paths) -> str:
    """Render the settings file included from postgresql.conf."""
    lines = [
        "# Written by services/stack/launcher.py on every `up`; edit StackConfig instead.",
        f"listen_addresses = '{HOST}'",
        f"port = {cfg.pg_port}",
        f"unix_socket_directories = '{paths.pg_socket_dir}'",
        "max_connections = 200",
        "logging_collector = off",
        "log_timezone = 'UTC'",
        "timezone = 'UTC'",
    ]
    if os.environ.get("KONTAKT_PG_FAST") == "1":
        # Trades crash safety for speed; only for throw-away dev/test data.
        lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
    return "\n".join(lines) + "\n"


def _pg_initdb(
    bindir: Path, cfg: StackConfig, paths: _Paths, progress: Callable[[str], None]
) -> None:
    """Create the project's own cluster in <state_dir>/postgres/data if it is not there yet."""
    version_file = paths.pg_data / "PG_VERSION"
    if version_file.exists():
        have = version_file.read_text().strip()
        want = bindir.parent.name
        if have != want:
            raise StackError(
                f"postgres: {paths.pg_data} was created by PostgreSQL {have} but the installed "
                f"server is {want}; delete {paths.pg_data} (dev data is lost) and run up again"
            )
        return
    if paths.pg_data.exists():
        # A previous initdb was interrupted: the directory is ours and holds no usable cluster.
        shutil.rmtree(paths.pg_data)
    progress(f"postgres: initdb {paths.pg_data} (PostgreSQL {bindir.parent.name})")
    cmd = _pg_cmd(
        [
            str(bindir / "initdb"),
            "-D",
            str(paths.pg_data),
            "--username",
            PG_BOOTSTRAP_ROLE,
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
            # Local socket (mode 700 dir) is trusted for admin work; TCP needs the password.
            "--auth-local",
            "trust",
            "--auth-host",
            "scram-sha-256",
        ]
    )
    with paths.pg_init_log.open("ab") as out:
        rc = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=paths.pg_root, timeout=300
        ).returncode
    if rc != 0:
        raise _fail(f"postgres: initdb failed with exit code {rc}", paths.pg_init_log)
    conf = paths.pg_data / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write("\ninclude_if_exists = 'kontakt.conf'\n")


def _pg_write_conf(cfg: StackConfig, paths: _Paths) -> bool:
    """Write kontakt.conf; return True if it changed."""
    target = paths.pg_data / "kontakt.conf"
    text = _pg_conf_text(cfg, paths)
    with contextlib.suppress(OSError):
        if target.read_text() == text:
            return False
    target.write_text(text)
    owner = _pg_owner()
    if owner:
        os.chown(target, *owner)
    return True


def _pg_running_pid(paths: _Paths) -> int | None:
    """Return the pid of our postmaster if it is alive, else None."""
    # postmaster.pid is PostgreSQL's own pid file; our run/postgres.pid mirrors it.
    for pid_file in (paths.pg_pid, paths.pg_data / "postmaster.pid"):
        pid = _read_pid(pid_file)
        if pid is None or not _pid_alive(pid):
            continue
        if _pg_is_ours(pid, paths):
            return pid
    return None


def _pg_is_ours(pid: int, paths: _Paths) -> bool:
    """Tell whether pid is the postmaster serving our data dir."""
    if _read_pid(paths.pg_data / "postmaster.pid") != pid:
        return False
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        args = _cmdline(pid)
        exe = args[0] if args else ""
    return Path(exe.removesuffix(" (deleted)")).name in ("postgres", "postmaster")


def _psql(
    bindir: Path,
    args: Sequence[str],
    sql: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run a psql script (stdin) with ON_ERROR_STOP and return the completed process."""
    cmd = [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *args, "-f", "-"]
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("PGSERVICE", None)
    return subprocess.run(
        cmd, input=sql, capture_output=True, text=True, env=full_env, timeout=timeout, cwd="/"
    )


def _pg_ensure_role_and_db(bindir: Path, cfg: StackConfig, paths: _Paths) -> None:
    """Create/refresh the application role and database via the local socket."""
    sql = """
SELECT format('CREATE ROLE %I LOGIN SUPERUSER', :'app_user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') \\gexec
SELECT format('ALTER ROLE %I WITH LOGIN SUPERUSER PASSWORD %L', :'app_user', :'app_pw') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'app_db') \\gexec
"""
    args = [
        "-h", str(paths.pg_socket_dir),
        "-p", str(cfg.pg_port),
        "-U", PG_BOOTSTRAP_ROLE,
        "-d", "postgres",
        "-v", f"app_user={cfg.pg_user}",
        "-v", f"app_pw={cfg.pg_password}",
        "-v", f"app_db={cfg.pg_database}",
    ]  # fmt: skip
    res = _psql(bindir, args, sql)
    if res.returncode != 0:
        raise _fail(f"postgres: creating role/database failed: {res.stderr.strip()}", paths.pg_log)


def _pg_select_1(bindir: Path, info: StackInfo) -> tuple[bool, str]:
    """Open a real TCP connection with the app credentials and run SELECT 1."""
    res = _psql(bindir, ["-d", info.pg_dsn(), "-tA"], "SELECT 1;", timeout=15)
    ok = res.returncode == 0 and res.stdout.strip() == "1"
    return ok, res.stderr.strip()


def _pg_up(
    cfg: StackConfig, paths: _Paths, bindir: Path, deadline: float, progress: Callable[[str], None]
) -> None:
    """Ensure our PostgreSQL cluster exists, runs, and serves the app role and database."""
    _pg_prepare_dirs(paths)
    _pg_initdb(bindir, cfg, paths, progress)
    conf_changed = _pg_write_conf(cfg, paths)
    pid = _pg_running_pid(paths)
    if pid is not None:
        # Still starting (wait) or running on another port after a config change (fail).
        if not _wait(lambda: _port_accepts(cfg.pg_port), deadline):
            raise _fail(
                f"postgres: our server (pid {pid}) runs but does not accept connections on "
                f"{HOST}:{cfg.pg_port}; run `down` then `up`",
                paths.pg_log,
            )
        progress(f"postgres: already running (pid {pid}) on {HOST}:{cfg.pg_port}")
        if conf_changed:
            # Settings such as fsync are reloadable; port changes need down/up.
            subprocess.run(
                _pg_cmd([str(bindir / "pg_ctl"), "-D", str(paths.pg_data), "reload"]),
                capture_output=True,
                cwd=paths.pg_root,
                timeout=30,
            )
    else:
        paths.pg_pid.unlink(missing_ok=True)
        _require_free_port(cfg.pg_port, "postgres")
        # No live postmaster of ours and the port is free, so its lock files are stale.
        # PostgreSQL itself would refuse to start while the old pid is a zombie (killed but
        # not yet reaped by init), because kill(pid, 0) still succeeds for it.
        (paths.pg_data / "postmaster.pid").unlink(missing_ok=True)
        for stale in paths.pg_socket_dir.glob(".s.PGSQL.*"):
            stale.unlink(missing_ok=True)
        progress(f"postgres: starting on {HOST}:{cfg.pg_port}")
        wait_s = max(5, int(deadline - time.monotonic()))
        cmd = _pg_cmd(
            [
                str(bindir / "pg_ctl"),
                "-D", str(paths.pg_data),
                "-l", str(paths.pg_log),
                "-w", "-t", str(wait_s),
                "start",
            ]
        )  # fmt: skip
        # New session: a Ctrl-C in the caller's terminal must not reach the postmaster.
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=paths.pg_root,
            start_new_session=True,
            timeout=wait_s + 30,
        )
        if res.returncode != 0:
            raise _fail(
                f"postgres: pg_ctl start failed (exit {res.returncode}): "
                f"{(res.stdout + res.stderr).strip()}",
                paths.pg_log,
            )
        pid = _read_pid(paths.pg_data / "postmaster.pid")
        if pid is None:
            raise _fail("postgres: started but postmaster.pid is missing", paths.pg_log)
    _write_pid(paths.pg_pid, pid)
    _pg_ensure_role_and_db(bindir, cfg, paths)
    info = _info(cfg)
    last_err = ""

    def ready() -> bool:
        nonlocal last_err
        ok, last_err = _pg_select_1(bindir, info)
        return ok

    if not _wait(ready, deadline):
        raise _fail(f"postgres: SELECT 1 over TCP failed: {last_err}", paths.pg_log)
    progress(f"postgres: ready, {info.pg_dsn().replace(':' + cfg.pg_password + '@', ':***@')}")


def _pg_down(paths: _Paths) -> str | None:
    """Stop our postmaster with pg_ctl stop -m fast (SIGTERM/SIGKILL as fallback)."""
    pid = _pg_running_pid(paths)
    if pid is None:
        stale = paths.pg_pid.exists()
        paths.pg_pid.unlink(missing_ok=True)
        return "postgres: not running (removed stale pid file)" if stale else None
    bindir = _pg_bindir()
    how = ""
    if bindir:
        res = subprocess.run(
            _pg_cmd(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(paths.pg_data),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ]
            ),
            capture_output=True,
            text=True,
            cwd=paths.pg_root,
            timeout=60,
        )
        how = "pg_ctl stop -m fast" if res.returncode == 0 else ""
    if not how or _pid_alive(pid):
        how = _terminate(pid)
    paths.pg_pid.unlink(missing_ok=True)
    return f"postgres: stopped pid {pid} ({how})"


# --------------------------------------------------------------------------- Kafka


def _java() -> str:
    """Locate a Java >= 17 runtime (JAVA_HOME first, then PATH)."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).is_file():
        raise StackError(
            "kafka: no Java runtime found (set JAVA_HOME or put java on PATH); "
            "install it with: apt-get install -y openjdk-17-jre-headless"
        )
    res = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', res.stderr + res.stdout)
    major = int(m.group(1)) if m else 0
    if major == 1 and m and m.group(2):
        major = int(m.group(2))  # "1.8.0_x" style
    if major < 17:
        raise StackError(f"kafka: Kafka 4.x needs Java 17+, but {java} is {major or 'unknown'}")
    return java


def _kafka_version() -> str:
    """Read <kafka.version> from infra/kafka/pom.xml."""
    try:
        root = ET.parse(KAFKA_POM).getroot()
    except (OSError, ET.ParseError) as exc:
        raise StackError(f"kafka: cannot read {KAFKA_POM}: {exc}") from exc
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = root.find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise StackError(f"kafka: {KAFKA_POM} has no <properties><kafka.version>")
    return (node.text or "").strip()


def _kafka_libs(paths: _Paths, progress: Callable[[str], None]) -> tuple[str, Path]:
    """Return (version, libs dir), resolving the jars with Maven unless cached."""
    version = _kafka_version()
    libs = paths.kafka_root / f"libs-{version}"
    # The marker holds the POM's hash so editing the POM (same version) refreshes the cache.
    pom_hash = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
    marker = libs / LIBS_MARKER
    with contextlib.suppress(OSError):
        if marker.read_text().strip() == pom_hash:
            return version, libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError("kafka: Maven (mvn) is not installed: apt-get install -y maven")
    paths.kafka_root.mkdir(parents=True, exist_ok=True)
    tmp = paths.kafka_root / f".libs-{version}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    progress(f"kafka: resolving Apache Kafka {version} jars with Maven into {libs}")
    base = [
        mvn, "-B", "-q", "-f", str(KAFKA_POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]  # fmt: skip
    rc = 1
    with paths.mvn_log.open("ab") as out:
        # Offline first: a warm ~/.m2 needs no network; fall back to online resolution.
        for extra in (["-o"], []):
            out.write(f"\n$ {' '.join(base + extra)}\n".encode())
            out.flush()
            try:
                rc = subprocess.run(
                    base + extra,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=KAFKA_INFRA_DIR,
                    timeout=MAVEN_TIMEOUT_SECONDS,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = -1
            if rc == 0:
                break
    jars = sorted(tmp.glob("*.jar")) if tmp.is_dir() else []
    if rc != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise _fail(f"kafka: Maven could not resolve the broker jars (exit {rc})", paths.mvn_log)
    (tmp / LIBS_MARKER).write_text(pom_hash + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    progress(f"kafka: {len(jars)} jars cached")
    return version, libs


def _kafka_props_text(cfg: StackConfig, paths: _Paths) -> str:
    """Render server.properties for a single combined broker+controller node."""
    ctrl = cfg.kafka_controller_port
    return "\n".join(
        [
            "# Written by services/stack/launcher.py when it starts the broker; edit StackConfig.",
            "process.roles=broker,controller",
            "node.id=1",
            # Static voter set: the controller port can change without reformatting storage.
            f"controller.quorum.voters=1@{HOST}:{ctrl}",
            f"listeners=PLAINTEXT://{HOST}:{cfg.kafka_port},CONTROLLER://{HOST}:{ctrl}",
            f"advertised.listeners=PLAINTEXT://{HOST}:{cfg.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={paths.kafka_data}",
            "auto.create.topics.enable=false",
            "num.partitions=1",
            "default.replication.factor=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
    )


def _kafka_cluster_id(paths: _Paths) -> str:
    """Return the persisted KRaft cluster id, creating one like Kafka's Uuid.randomUuid()."""
    with contextlib.suppress(OSError):
        existing = paths.kafka_cluster_id.read_text().strip()
        if existing:
            return existing
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # Kafka rejects ids that look like CLI flags
            break
    paths.kafka_cluster_id.write_text(cid + "\n")
    return cid


def _kafka_jvm_base(java: str, libs: Path, paths: _Paths) -> list[str]:
    """Common JVM arguments for the broker and its storage tool."""
    return [
        java,
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={paths.logs}",
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J_CONFIG}",
        "-cp",
        f"{libs}/*",
    ]


def _kafka_format(java: str, libs: Path, paths: _Paths, progress: Callable[[str], None]) -> None:
    """Format KRaft storage once; later starts reuse it."""
    if (paths.kafka_data / "meta.properties").exists():
        return
    cid = _kafka_cluster_id(paths)
    progress(f"kafka: formatting storage {paths.kafka_data} (cluster id {cid})")
    log = paths.logs / "kafka-format.log"
    cmd = [
        *_kafka_jvm_base(java, libs, paths),
        "kafka.tools.StorageTool", "format",
        "-t", cid,
        "-c", str(paths.kafka_props),
        "--ignore-formatted",
    ]  # fmt: skip
    with log.open("ab") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=120).returncode
    if rc != 0 or not (paths.kafka_data / "meta.properties").exists():
        raise _fail(f"kafka: storage format failed (exit {rc})", log)


def _kafka_is_ours(pid: int, paths: _Paths) -> bool:
    """Tell whether pid is a Kafka JVM started with our server.properties."""
    args = _cmdline(pid)
    return "kafka.Kafka" in args and str(paths.kafka_props) in args


def _kafka_running_pid(paths: _Paths) -> int | None:
    """Return the pid of our Kafka JVM if alive, else None."""
    pid = _read_pid(paths.kafka_pid)
    if pid is not None and _pid_alive(pid) and _kafka_is_ours(pid, paths):
        return pid
    return None


def _kafka_spawn(java: str, libs: Path, cfg: StackConfig, paths: _Paths) -> int:
    """Start the broker detached and record its pid."""
    cmd = [
        *_kafka_jvm_base(java, libs, paths)[:1],
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        *_kafka_jvm_base(java, libs, paths)[1:],
        "kafka.Kafka",
        str(paths.kafka_props),
    ]
    with paths.kafka_out.open("ab") as out:
        out.write(
            f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode()
        )
        out.flush()
        # New session so terminal signals to the caller (Ctrl-C, pytest exit) do not reach it.
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=paths.kafka_root,
            start_new_session=True,
            close_fds=True,
        )
    _write_pid(paths.kafka_pid, proc.pid)
    return proc.pid


def _kafka_request(
    sock: socket.socket, api_key: int, version: int, corr: int, body: bytes
) -> bytes:
    """Send one Kafka request (header v1) and return the response body after the correlation id."""
    client_id = b"kontakt-stack"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    data = _recv_exact(sock, size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise OSError("kafka: correlation id mismatch")
    return data[4:]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly n bytes from a socket."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return bytes(buf)


def _kafka_broker_ready(port: int) -> bool:
    """Ask the broker for metadata and check it lists itself as an alive (unfenced) broker."""
    try:
        with socket.create_connection((HOST, port), timeout=2.0) as sock:
            sock.settimeout(5.0)
            # ApiVersions v0 is always answered; it tells us which Metadata version to use.
            resp = _kafka_request(sock, 18, 0, 1, b"")
            error, count = struct.unpack(">hi", resp[:6])
            if error != 0:
                return False
            meta_range: tuple[int, int] | None = None
            for i in range(count):
                key, lo, hi = struct.unpack(">hhh", resp[6 + 6 * i : 12 + 6 * i])
                if key == 3:
                    meta_range = (lo, hi)
            if meta_range is None:
                return False
            version = min(8, meta_range[1])  # v1..v8 are the non-flexible encodings we speak
            if version < max(1, meta_range[0]):
                return False
            body = struct.pack(">i", 0)  # empty topic list: brokers only
            if version >= 4:
                body += b"\x00"  # allow_auto_topic_creation = false
            if version >= 8:
                body += b"\x00\x00"  # include cluster/topic authorized operations = false
            resp = _kafka_request(sock, 3, version, 2, body)
            off = 4 if version >= 3 else 0  # throttle_time_ms
            (n_brokers,) = struct.unpack_from(">i", resp, off)
            off += 4
            for _ in range(n_brokers):
                _node, hlen = struct.unpack_from(">ih", resp, off)
                off += 6 + hlen
                (bport,) = struct.unpack_from(">i", resp, off)
                off += 4
                (rlen,) = struct.unpack_from(">h", resp, off)
                off += 2 + max(rlen, 0)
                if bport == port:
                    return True
            return False
    except (OSError, struct.error):
        return False


def _kafka_up(cfg: StackConfig, paths: _Paths, progress: Callable[[str], None]) -> tuple[int, bool]:
    """Ensure the broker process runs (without waiting for readiness); return (pid, started)."""
    paths.kafka_root.mkdir(parents=True, exist_ok=True)
    for d in (paths.logs, paths.run):
        d.mkdir(parents=True, exist_ok=True)
    pid = _kafka_running_pid(paths)
    props = _kafka_props_text(cfg, paths)
    if pid is not None:
        with contextlib.suppress(OSError):
            if paths.kafka_props.read_text() != props:
                progress("kafka: config changed since start; run `down` then `up` to apply it")
        progress(f"kafka: already running (pid {pid}) on {HOST}:{cfg.kafka_port}")
        return pid, False
    if paths.kafka_pid.exists():
        progress("kafka: removing stale pid file")
        paths.kafka_pid.unlink(missing_ok=True)
    _require_free_port(cfg.kafka_port, "kafka")
    _require_free_port(cfg.kafka_controller_port, "kafka controller")
    java = _java()
    version, libs = _kafka_libs(paths, progress)
    paths.kafka_props.write_text(props)
    _kafka_format(java, libs, paths, progress)
    pid = _kafka_spawn(java, libs, cfg, paths)
    progress(f"kafka: starting Apache Kafka {version} (pid {pid}) on {HOST}:{cfg.kafka_port}")
    return pid, True


def _kafka_wait(cfg: StackConfig, paths: _Paths, pid: int, deadline: float) -> None:
    """Wait until our broker answers metadata requests, or raise with the log tails."""
    while True:
        if not _pid_alive(pid):
            paths.kafka_pid.unlink(missing_ok=True)
            raise _fail(
                f"kafka: broker process {pid} exited during startup",
                paths.kafka_out,
                paths.kafka_server_log,
            )
        if _kafka_broker_ready(cfg.kafka_port):
            return
        if time.monotonic() >= deadline:
            raise _fail(
                f"kafka: broker (pid {pid}) not ready on {HOST}:{cfg.kafka_port} "
                "within the timeout",
                paths.kafka_out,
                paths.kafka_server_log,
            )
        time.sleep(0.25)


def _kafka_down(paths: _Paths) -> str | None:
    """Stop our Kafka JVM by pid (SIGTERM, then SIGKILL after the grace period)."""
    pid = _kafka_running_pid(paths)
    if pid is None:
        stale = paths.kafka_pid.exists()
        paths.kafka_pid.unlink(missing_ok=True)
        return "kafka: not running (removed stale pid file)" if stale else None
    how = _terminate(pid)
    paths.kafka_pid.unlink(missing_ok=True)
    return f"kafka: stopped pid {pid} ({how})"


# --------------------------------------------------------------------------- public API


def _wait(check: Callable[[], bool], deadline: float, interval: float = 0.25) -> bool:
    """Poll check() until it is true or the deadline passes."""
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def up(
    cfg: StackConfig, *, timeout: float = 120.0, progress: Callable[[str], None] = print
) -> StackInfo:
    """Start (or reuse) PostgreSQL and Kafka and return once both accept clients.

    `timeout` bounds the wait for the servers to become ready; a first-time apt-get
    install or Maven download has its own, longer limits.
    """
    paths = _Paths.of(cfg)
    t0 = time.monotonic()
    with _locked(paths):
        for d in (paths.logs, paths.run):
            d.mkdir(parents=True, exist_ok=True)
        bindir = _pg_install(progress, paths)
        # Launch the JVM first: it boots while PostgreSQL is initialised and started.
        kafka_pid, started = _kafka_up(cfg, paths, progress)
        deadline = time.monotonic() + timeout
        try:
            _pg_up(cfg, paths, bindir, deadline, progress)
            _kafka_wait(cfg, paths, kafka_pid, deadline)
        except BaseException:
            # Do not leave a half-started broker behind; a running PostgreSQL is harmless.
            if started:
                _kafka_down(paths)
            raise
        progress(f"kafka: ready at {HOST}:{cfg.kafka_port}")
    progress(f"stack: up in {time.monotonic() - t0:.1f}s (logs in {paths.logs})")
    return _info(cfg)


def down(cfg: StackConfig) -> list[str]:
    """Stop the servers this stack started (by pid file); return what was done."""
    paths = _Paths.of(cfg)
    if not paths.root.exists():
        return ["nothing running"]
    lines: list[str] = []
    with _locked(paths):
        for stop in (_kafka_down, _pg_down):
            line = stop(paths)
            if line:
                lines.append(line)
    return lines or ["nothing running"]


def stop_kafka(cfg: StackConfig) -> str | None:
    """Stop only the Kafka broker (for outage drills); PostgreSQL keeps running."""
    paths = _Paths.of(cfg)
    with _locked(paths):
        return _kafka_down(paths)


def start_kafka(cfg: StackConfig, *, timeout: float = 120.0) -> None:
    """Start the Kafka broker again (reusing its storage) and wait until it serves clients."""
    paths = _Paths.of(cfg)
    with _locked(paths):
        pid, _ = _kafka_up(cfg, paths, lambda _: None)
        _kafka_wait(cfg, paths, pid, time.monotonic() + timeout)


def stop_postgres(cfg: StackConfig) -> str | None:
    """Stop only PostgreSQL (for outage drills); Kafka keeps running."""
    paths = _Paths.of(cfg)
    with _locked(paths):
        return _pg_down(paths)


def start_postgres(cfg: StackConfig, *, timeout: float = 120.0) -> None:
    """Start PostgreSQL again (reusing its data) and wait until it serves clients."""
    paths = _Paths.of(cfg)
    with _locked(paths):
        bindir = _pg_install(lambda _: None, paths)
        _pg_up(cfg, paths, bindir, time.monotonic() + timeout, lambda _: None)


def status(cfg: StackConfig) -> dict[str, Any]:
    """Report which servers run and how to connect to them."""
    paths = _Paths.of(cfg)
    info = _info(cfg)
    pg_pid = _pg_running_pid(paths) if paths.pg_data.exists() else None
    kafka_pid = _kafka_running_pid(paths)
    libs = sorted(paths.kafka_root.glob("libs-*")) if paths.kafka_root.exists() else []
    return {
        "postgres": {
            "running": pg_pid is not None and _port_accepts(cfg.pg_port),
            "pid": pg_pid,
            "host": HOST,
            "port": cfg.pg_port,
            "user": cfg.pg_user,
            "database": cfg.pg_database,
            "dsn": info.pg_dsn(),
            "data_dir": str(paths.pg_data),
        },
        "kafka": {
            "running": kafka_pid is not None and _port_accepts(cfg.kafka_port),
            "pid": kafka_pid,
            "port": cfg.kafka_port,
            "controller_port": cfg.kafka_controller_port,
            "bootstrap": info.kafka_bootstrap,
            "libs": str(libs[-1]) if libs else None,
            "data_dir": str(paths.kafka_data),
        },
        "log_dir": str(paths.logs),
        "state_dir": str(paths.root),
    }


def ensure_database(info: StackInfo, name: str) -> None:
    """CREATE DATABASE name (owner pg_user) if it does not exist yet."""
    bindir = _pg_bindir()
    if bindir is None:
        raise StackError("postgres: client binaries not found under /usr/lib/postgresql/*/bin")
    sql = """
SELECT format('CREATE DATABASE %I OWNER %I', :'dbname', :'owner')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'dbname') \\gexec
"""
    args = ["-d", info.pg_dsn("postgres"), "-v", f"dbname={name}", "-v", f"owner={info.pg_user}"]
    res = _psql(bindir, args, sql)
    # A concurrent caller may have created it between the check and the CREATE.
    if res.returncode != 0 and "already exists" not in res.stderr:
        raise StackError(f"postgres: CREATE DATABASE {name!r} failed: {res.stderr.strip()}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: up | down | status."""
    parser = argparse.ArgumentParser(
        prog="python -m services.stack.launcher", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for readiness"
    )
    args = parser.parse_args(argv)
    cfg = StackConfig.from_env()
    try:
        if args.command == "up":
            info = up(cfg, timeout=args.timeout)
            for key, value in info.as_env().items():
                print(f"{key}={value}")
        elif args.command == "down":
            for line in down(cfg):
                print(line)
        else:
            print(json.dumps(status(cfg), indent=2))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
