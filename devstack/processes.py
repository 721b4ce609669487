"""The servers' processes: pid files, liveness, ports, the state-dir lock, stopping, log tails."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from devstack.config import HOST, Paths, StackError

LOG_TAIL_LINES = 40
STOP_GRACE_SECONDS = 20.0


def is_root() -> bool:
    """Tell whether we run as root (PostgreSQL then has to run as the postgres user)."""
    return os.geteuid() == 0


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
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


def failure(reason: str, *logs: Path) -> StackError:
    """Build a StackError whose message carries the reason and the tails of the given logs."""
    parts = [reason] + [tail(p) for p in logs]
    return StackError("\n".join(parts))


def pid_alive(pid: int) -> bool:
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


def cmdline(pid: int) -> list[str]:
    """Return a process's argv, or [] if unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def read_pid(path: Path) -> int | None:
    """Read a pid from the first line of a pid file."""
    try:
        first = path.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def write_pid(path: Path, pid: int) -> None:
    """Write a pid file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def forget_pid_file(path: Path, what: str) -> str | None:
    """Remove the pid file of a server that no longer runs; say so if there was one."""
    stale = path.exists()
    path.unlink(missing_ok=True)
    return f"{what}: not running (removed stale pid file)" if stale else None


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    """Tell whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(port: int) -> bool:
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


def require_free_port(port: int, what: str) -> None:
    """Raise StackError if a port needed by a server we are about to start is taken."""
    if not port_free(port):
        raise StackError(
            f"{what}: port {HOST}:{port} is already in use by a process that this stack did not "
            f"start{_port_owner(port)}. Stop it or choose another port "
            "(KONTAKT_PG_PORT / KONTAKT_KAFKA_PORT / KONTAKT_KAFKA_CONTROLLER_PORT)."
        )


@contextlib.contextmanager
def locked(paths: Paths) -> Iterator[None]:
    """Hold an exclusive lock on the state dir so concurrent up/down calls do not race."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.lock.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def terminate(pid: int, grace: float = STOP_GRACE_SECONDS) -> str:
    """SIGTERM a process, wait up to `grace` seconds, then SIGKILL; return what happened."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already gone"
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return "stopped"
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    return f"killed (did not stop within {grace:.0f}s)"


def wait_until(check: Callable[[], bool], deadline: float, interval: float = 0.25) -> bool:
    """Poll check() until it is true or the deadline passes."""
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
