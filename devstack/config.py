"""What a local stack is: its config, connection settings, on-disk layout and error.

Layout under ``StackConfig.state_dir``::

    stack.lock                 serialises concurrent up/down calls
    logs/                      postgres.log, kafka.out, kafka-*.log, mvn.log, ...
    run/postgres.pid           pid of the postmaster we started
    run/kafka.pid              pid of the Kafka JVM we started
    postgres/data/             our own cluster (never the Debian system cluster)
    postgres/run/              unix socket directory
    kafka/libs-<version>/      broker jars copied by Maven from devstack/broker/pom.xml
    kafka/server.properties    generated broker config
    kafka/cluster.id           KRaft cluster id, kept so restarts reuse formatted storage
    kafka/data/                Kafka log.dirs (also holds the KRaft metadata log)
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A server could not be installed or started; message includes the reason and the log tail."""


def _default_state_dir() -> Path:
    """Return the default state directory for the current user."""
    if os.geteuid() == 0:
        # /root is mode 700 and the unprivileged postgres user must traverse the path.
        return Path("/var/lib/kontakt/stack")
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "kontakt" / "stack"


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

    @classmethod
    def of(cls, cfg: StackConfig) -> StackInfo:
        """The connection settings of a config's stack."""
        return cls(
            pg_host=HOST,
            pg_port=cfg.pg_port,
            pg_user=cfg.pg_user,
            pg_password=cfg.pg_password,
            pg_database=cfg.pg_database,
            kafka_bootstrap=f"{HOST}:{cfg.kafka_port}",
            log_dir=Paths.of(cfg).logs,
        )

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


@dataclass(frozen=True)
class Paths:
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
    def of(cls, cfg: StackConfig) -> Paths:
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
