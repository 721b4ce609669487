"""The stack's single-node Kafka (KRaft): jars through Maven, storage format, start, readiness."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib.resources
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from devstack.config import HOST, Paths, StackConfig, StackError
from devstack.processes import (
    cmdline,
    failure,
    forget_pid_file,
    pid_alive,
    port_accepts,
    read_pid,
    require_free_port,
    terminate,
    write_pid,
)

MAVEN_TIMEOUT_SECONDS = 900.0
LIBS_MARKER = ".complete"
#: How long one readiness probe may wait for the broker's answer.
PROBE_TIMEOUT_MS = 5000


def broker_file(name: str) -> Path:
    """A file of the broker's package data (pom.xml, log4j2.properties) as a path on disk."""
    resource = importlib.resources.files("devstack") / "broker" / name
    if not isinstance(resource, Path):
        # Maven and the JVM open these by path; a zipped install has none to give them.
        raise StackError(f"kafka: devstack's {name} is not a file on disk ({resource})")
    return resource


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


def _version(pom: Path) -> str:
    """Read <kafka.version> from the broker's pom.xml."""
    try:
        root = ET.parse(pom).getroot()
    except (OSError, ET.ParseError) as exc:
        raise StackError(f"kafka: cannot read {pom}: {exc}") from exc
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = root.find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise StackError(f"kafka: {pom} has no <properties><kafka.version>")
    return (node.text or "").strip()


def _libs(paths: Paths, progress: Callable[[str], None]) -> tuple[str, Path]:
    """Return (version, libs dir), resolving the jars with Maven unless cached."""
    pom = broker_file("pom.xml")
    version = _version(pom)
    libs = paths.kafka_root / f"libs-{version}"
    # The marker holds the POM's hash so editing the POM (same version) refreshes the cache.
    pom_hash = hashlib.sha256(pom.read_bytes()).hexdigest()
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
        mvn, "-B", "-q", "-f", str(pom),
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
                    cwd=paths.kafka_root,
                    timeout=MAVEN_TIMEOUT_SECONDS,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = -1
            if rc == 0:
                break
    jars = sorted(tmp.glob("*.jar")) if tmp.is_dir() else []
    if rc != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise failure(f"kafka: Maven could not resolve the broker jars (exit {rc})", paths.mvn_log)
    (tmp / LIBS_MARKER).write_text(pom_hash + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    progress(f"kafka: {len(jars)} jars cached")
    return version, libs


def _props_text(cfg: StackConfig, paths: Paths) -> str:
    """Render server.properties for a single combined broker+controller node."""
    ctrl = cfg.kafka_controller_port
    return "\n".join(
        [
            "# Written by devstack/kafka.py when it starts the broker; edit StackConfig.",
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


def _cluster_id(paths: Paths) -> str:
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


def _jvm_base(java: str, libs: Path, paths: Paths) -> list[str]:
    """Common JVM arguments for the broker and its storage tool."""
    return [
        java,
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={paths.logs}",
        f"-Dlog4j2.configurationFile={broker_file('log4j2.properties')}",
        "-cp",
        f"{libs}/*",
    ]


def _format(java: str, libs: Path, paths: Paths, progress: Callable[[str], None]) -> None:
    """Format KRaft storage once; later starts reuse it."""
    if (paths.kafka_data / "meta.properties").exists():
        return
    cid = _cluster_id(paths)
    progress(f"kafka: formatting storage {paths.kafka_data} (cluster id {cid})")
    log = paths.logs / "kafka-format.log"
    cmd = [
        *_jvm_base(java, libs, paths),
        "kafka.tools.StorageTool", "format",
        "-t", cid,
        "-c", str(paths.kafka_props),
        "--ignore-formatted",
    ]  # fmt: skip
    with log.open("ab") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=120).returncode
    if rc != 0 or not (paths.kafka_data / "meta.properties").exists():
        raise failure(f"kafka: storage format failed (exit {rc})", log)


def _is_ours(pid: int, paths: Paths) -> bool:
    """Tell whether pid is a Kafka JVM started with our server.properties."""
    args = cmdline(pid)
    return "kafka.Kafka" in args and str(paths.kafka_props) in args


def running_pid(paths: Paths) -> int | None:
    """Return the pid of our Kafka JVM if alive, else None."""
    pid = read_pid(paths.kafka_pid)
    if pid is not None and pid_alive(pid) and _is_ours(pid, paths):
        return pid
    return None


def _spawn(java: str, libs: Path, cfg: StackConfig, paths: Paths) -> int:
    """Start the broker detached and record its pid."""
    cmd = [
        *_jvm_base(java, libs, paths)[:1],
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        *_jvm_base(java, libs, paths)[1:],
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
    write_pid(paths.kafka_pid, proc.pid)
    return proc.pid


#: Name prefix of the threads that probe the broker; their client logs are dropped.
_PROBE_THREAD = "kontakt-stack-kafka-probe"


def _not_from_a_probe(record: logging.LogRecord) -> bool:
    """Keep a log record unless a readiness probe made it (a booting broker refuses often)."""
    return not (record.threadName or "").startswith(_PROBE_THREAD)


async def _lists_itself(port: int) -> bool:
    """Ask the broker for the cluster and check it lists itself as an alive broker."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=f"{HOST}:{port}",
        client_id="kontakt-stack",
        request_timeout_ms=PROBE_TIMEOUT_MS,
    )
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_MS / 1000):
            await admin.start()
            cluster = await admin.describe_cluster()
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return any(broker.get("port") == port for broker in cluster.get("brokers", []))


def broker_ready(port: int) -> bool:
    """Tell whether the broker on 127.0.0.1:port answers metadata and lists itself."""
    if not port_accepts(port):
        return False
    # A logger's filters do not see its children's records: each of the client's gets one.
    for name in list(logging.root.manager.loggerDict):
        if name == "aiokafka" or name.startswith("aiokafka."):
            logger = logging.getLogger(name)
            if _not_from_a_probe not in logger.filters:
                logger.addFilter(_not_from_a_probe)
    # A thread of its own: callers may hold a running event loop (or none at all).
    with ThreadPoolExecutor(1, thread_name_prefix=_PROBE_THREAD) as pool:
        return pool.submit(asyncio.run, _lists_itself(port)).result()


def launch(cfg: StackConfig, paths: Paths, progress: Callable[[str], None]) -> tuple[int, bool]:
    """Ensure the broker process runs (without waiting for readiness); return (pid, started)."""
    paths.kafka_root.mkdir(parents=True, exist_ok=True)
    for d in (paths.logs, paths.run):
        d.mkdir(parents=True, exist_ok=True)
    pid = running_pid(paths)
    props = _props_text(cfg, paths)
    if pid is not None:
        with contextlib.suppress(OSError):
            if paths.kafka_props.read_text() != props:
                progress("kafka: config changed since start; run `down` then `up` to apply it")
        progress(f"kafka: already running (pid {pid}) on {HOST}:{cfg.kafka_port}")
        return pid, False
    if paths.kafka_pid.exists():
        progress("kafka: removing stale pid file")
        paths.kafka_pid.unlink(missing_ok=True)
    require_free_port(cfg.kafka_port, "kafka")
    require_free_port(cfg.kafka_controller_port, "kafka controller")
    java = _java()
    version, libs = _libs(paths, progress)
    paths.kafka_props.write_text(props)
    _format(java, libs, paths, progress)
    pid = _spawn(java, libs, cfg, paths)
    progress(f"kafka: starting Apache Kafka {version} (pid {pid}) on {HOST}:{cfg.kafka_port}")
    return pid, True


#: How much longer than the deadline a broker that keeps writing its log may take: loading
#: thousands of partitions (a data folder many runs have used) outlasts the usual timeout.
GRACE_WHILE_LOGGING_SECONDS = 480.0

#: A broker whose log grew this recently is still starting, not stuck.
LOGGING_LATELY_SECONDS = 20.0


def _logging_lately(paths: Paths) -> bool:
    try:
        return time.time() - paths.kafka_server_log.stat().st_mtime < LOGGING_LATELY_SECONDS
    except OSError:
        return False


def wait_ready(cfg: StackConfig, paths: Paths, pid: int, deadline: float) -> None:
    """Wait until our broker answers metadata requests, or raise with the log tails.

    Past the deadline a broker still writing its log gets GRACE_WHILE_LOGGING_SECONDS more.
    """
    ceiling = deadline + GRACE_WHILE_LOGGING_SECONDS
    while True:
        if not pid_alive(pid):
            paths.kafka_pid.unlink(missing_ok=True)
            raise failure(
                f"kafka: broker process {pid} exited during startup",
                paths.kafka_out,
                paths.kafka_server_log,
            )
        if broker_ready(cfg.kafka_port):
            return
        now = time.monotonic()
        if now >= ceiling or (now >= deadline and not _logging_lately(paths)):
            raise failure(
                f"kafka: broker (pid {pid}) not ready on {HOST}:{cfg.kafka_port} "
                "within the timeout",
                paths.kafka_out,
                paths.kafka_server_log,
            )
        time.sleep(0.25)


def stop(paths: Paths) -> str | None:
    """Stop our Kafka JVM by pid (SIGTERM, then SIGKILL after the grace period)."""
    pid = running_pid(paths)
    if pid is None:
        return forget_pid_file(paths.kafka_pid, "kafka")
    how = terminate(pid)
    paths.kafka_pid.unlink(missing_ok=True)
    return f"kafka: stopped pid {pid} ({how})"
