"""The stack's own PostgreSQL cluster: install, initdb, configure, start, stop, databases."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from devstack.config import HOST, Paths, StackConfig, StackError, StackInfo
from devstack.processes import (
    cmdline,
    failure,
    forget_pid_file,
    is_root,
    pid_alive,
    port_accepts,
    read_pid,
    require_free_port,
    terminate,
    wait_until,
    write_pid,
)

PG_SYSTEM_USER = "postgres"
PG_BOOTSTRAP_ROLE = "postgres"
APT_TIMEOUT_SECONDS = 1800.0


def server_bindir() -> Path | None:
    """Return the newest /usr/lib/postgresql/<major>/bin that has server binaries."""
    candidates: list[tuple[int, Path]] = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            with contextlib.suppress(ValueError):
                candidates.append((int(d.parent.name), d))
    return max(candidates)[1] if candidates else None


def install(progress: Callable[[str], None], paths: Paths) -> Path:
    """Locate PostgreSQL server binaries, installing Debian's package if we may."""
    bindir = server_bindir()
    if bindir:
        return bindir
    if not is_root():
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
                raise failure(f"postgres: {' '.join(cmd)} timed out", log) from exc
            if rc != 0:
                raise failure(f"postgres: {' '.join(cmd)} failed with exit code {rc}", log)
    bindir = server_bindir()
    if not bindir:
        raise failure(
            "postgres: apt-get install postgresql finished but no server binaries found", log
        )
    return bindir


def _as_server_user(args: Sequence[str]) -> list[str]:
    """Prefix a command so it runs as the postgres system user when we are root."""
    if is_root():
        return ["runuser", "-u", PG_SYSTEM_USER, "--", *args]
    return list(args)


def _server_owner() -> tuple[int, int] | None:
    """Return (uid, gid) of the postgres system user when running as root, else None."""
    if not is_root():
        return None
    try:
        pw = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError as exc:
        raise StackError(
            f"running as root but there is no '{PG_SYSTEM_USER}' system user to run PostgreSQL "
            "as (it is created by Debian's postgresql package: apt-get install -y postgresql)"
        ) from exc
    return pw.pw_uid, pw.pw_gid


def _prepare_dirs(paths: Paths) -> None:
    """Create the PostgreSQL directories with owners/modes the server user can use."""
    owner = _server_owner()
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


def _conf_text(cfg: StackConfig, paths: Paths) -> str:
    """Render the settings file included from postgresql.conf."""
    lines = [
        "# Written by devstack/postgres.py on every `up`; edit StackConfig instead.",
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


def _initdb(bindir: Path, cfg: StackConfig, paths: Paths, progress: Callable[[str], None]) -> None:
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
    cmd = _as_server_user(
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
        raise failure(f"postgres: initdb failed with exit code {rc}", paths.pg_init_log)
    conf = paths.pg_data / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write("\ninclude_if_exists = 'kontakt.conf'\n")


def _write_conf(cfg: StackConfig, paths: Paths) -> bool:
    """Write kontakt.conf; return True if it changed."""
    target = paths.pg_data / "kontakt.conf"
    text = _conf_text(cfg, paths)
    with contextlib.suppress(OSError):
        if target.read_text() == text:
            return False
    target.write_text(text)
    owner = _server_owner()
    if owner:
        os.chown(target, *owner)
    return True


def running_pid(paths: Paths) -> int | None:
    """Return the pid of our postmaster if it is alive, else None."""
    # postmaster.pid is PostgreSQL's own pid file; our run/postgres.pid mirrors it.
    for pid_file in (paths.pg_pid, paths.pg_data / "postmaster.pid"):
        pid = read_pid(pid_file)
        if pid is None or not pid_alive(pid):
            continue
        if _is_ours(pid, paths):
            return pid
    return None


def _is_ours(pid: int, paths: Paths) -> bool:
    """Tell whether pid is the postmaster serving our data dir."""
    if read_pid(paths.pg_data / "postmaster.pid") != pid:
        return False
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        args = cmdline(pid)
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


def _ensure_role_and_db(bindir: Path, cfg: StackConfig, paths: Paths) -> None:
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
        raise failure(
            f"postgres: creating role/database failed: {res.stderr.strip()}", paths.pg_log
        )


def _select_1(bindir: Path, info: StackInfo) -> tuple[bool, str]:
    """Open a real TCP connection with the app credentials and run SELECT 1."""
    res = _psql(bindir, ["-d", info.pg_dsn(), "-tA"], "SELECT 1;", timeout=15)
    ok = res.returncode == 0 and res.stdout.strip() == "1"
    return ok, res.stderr.strip()


def start(
    cfg: StackConfig, paths: Paths, bindir: Path, deadline: float, progress: Callable[[str], None]
) -> None:
    """Ensure our PostgreSQL cluster exists, runs, and serves the app role and database."""
    _prepare_dirs(paths)
    _initdb(bindir, cfg, paths, progress)
    conf_changed = _write_conf(cfg, paths)
    pid = running_pid(paths)
    if pid is not None:
        # Still starting (wait) or running on another port after a config change (fail).
        if not wait_until(lambda: port_accepts(cfg.pg_port), deadline):
            raise failure(
                f"postgres: our server (pid {pid}) runs but does not accept connections on "
                f"{HOST}:{cfg.pg_port}; run `down` then `up`",
                paths.pg_log,
            )
        progress(f"postgres: already running (pid {pid}) on {HOST}:{cfg.pg_port}")
        if conf_changed:
            # Settings such as fsync are reloadable; port changes need down/up.
            subprocess.run(
                _as_server_user([str(bindir / "pg_ctl"), "-D", str(paths.pg_data), "reload"]),
                capture_output=True,
                cwd=paths.pg_root,
                timeout=30,
            )
    else:
        paths.pg_pid.unlink(missing_ok=True)
        require_free_port(cfg.pg_port, "postgres")
        # No live postmaster of ours and the port is free, so its lock files are stale.
        # PostgreSQL itself would refuse to start while the old pid is a zombie (killed but
        # not yet reaped by init), because kill(pid, 0) still succeeds for it.
        (paths.pg_data / "postmaster.pid").unlink(missing_ok=True)
        for stale in paths.pg_socket_dir.glob(".s.PGSQL.*"):
            stale.unlink(missing_ok=True)
        progress(f"postgres: starting on {HOST}:{cfg.pg_port}")
        wait_s = max(5, int(deadline - time.monotonic()))
        cmd = _as_server_user(
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
            raise failure(
                f"postgres: pg_ctl start failed (exit {res.returncode}): "
                f"{(res.stdout + res.stderr).strip()}",
                paths.pg_log,
            )
        pid = read_pid(paths.pg_data / "postmaster.pid")
        if pid is None:
            raise failure("postgres: started but postmaster.pid is missing", paths.pg_log)
    write_pid(paths.pg_pid, pid)
    _ensure_role_and_db(bindir, cfg, paths)
    info = StackInfo.of(cfg)
    last_err = ""

    def ready() -> bool:
        nonlocal last_err
        ok, last_err = _select_1(bindir, info)
        return ok

    if not wait_until(ready, deadline):
        raise failure(f"postgres: SELECT 1 over TCP failed: {last_err}", paths.pg_log)
    progress(f"postgres: ready, {info.pg_dsn().replace(':' + cfg.pg_password + '@', ':***@')}")


def stop(paths: Paths) -> str | None:
    """Stop our postmaster with pg_ctl stop -m fast (SIGTERM/SIGKILL as fallback)."""
    pid = running_pid(paths)
    if pid is None:
        return forget_pid_file(paths.pg_pid, "postgres")
    bindir = server_bindir()
    how = ""
    if bindir:
        res = subprocess.run(
            _as_server_user(
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
    if not how or pid_alive(pid):
        how = terminate(pid)
    paths.pg_pid.unlink(missing_ok=True)
    return f"postgres: stopped pid {pid} ({how})"


def create_database(info: StackInfo, name: str) -> None:
    """CREATE DATABASE name (owner pg_user) if it does not exist yet."""
    bindir = server_bindir()
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
