"""The local stack's Kafka readiness: the probe against the real broker and non-brokers, and
how long a starting broker is waited for."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from devstack import kafka
from devstack import stack as launcher
from devstack.config import Paths, StackConfig, StackError
from tests.support import free_port


def test_the_probe_sees_the_running_broker(stack: launcher.StackInfo) -> None:
    port = int(stack.kafka_bootstrap.rsplit(":", 1)[1])
    assert kafka.broker_ready(port)


def test_the_probe_says_no_where_nothing_listens() -> None:
    assert not kafka.broker_ready(free_port())


def test_the_probe_says_no_quietly_to_a_listener_that_is_no_broker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def hang_up() -> None:
            # Accept and close at once, as a server that is no Kafka broker would.
            for _ in range(20):
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        with caplog.at_level(logging.DEBUG, logger="aiokafka"):
            assert not kafka.broker_ready(port)
    assert [r for r in caplog.records if r.name.startswith("aiokafka")] == []


def _waiting_paths(tmp_path: Path) -> tuple[StackConfig, Paths]:
    cfg = StackConfig(state_dir=tmp_path, kafka_port=free_port())
    paths = Paths.of(cfg)
    paths.kafka_server_log.parent.mkdir(parents=True, exist_ok=True)
    paths.kafka_server_log.write_text("[..] INFO [LogLoader partition=contacts.events-0] ...\n")
    return cfg, paths


def test_a_broker_still_writing_its_log_is_waited_for_past_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, paths = _waiting_paths(tmp_path)
    monkeypatch.setattr(kafka, "GRACE_WHILE_LOGGING_SECONDS", 1.5)
    ready_after = time.monotonic() + 1.0
    # A broker loading many partitions: it logs on, and answers only later.
    monkeypatch.setattr(kafka, "broker_ready", lambda _port: time.monotonic() >= ready_after)
    kafka.wait_ready(cfg, paths, os.getpid(), deadline=time.monotonic() + 0.2)
    assert time.monotonic() >= ready_after


def test_a_broker_whose_log_went_quiet_fails_at_the_deadline_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, paths = _waiting_paths(tmp_path)
    quiet = time.time() - kafka.LOGGING_LATELY_SECONDS - 5
    os.utime(paths.kafka_server_log, (quiet, quiet))
    monkeypatch.setattr(kafka, "broker_ready", lambda _port: False)
    with pytest.raises(StackError, match="not ready") as raised:
        kafka.wait_ready(cfg, paths, os.getpid(), deadline=time.monotonic() + 0.2)
    assert "LogLoader" in str(raised.value)


def test_a_broker_logging_forever_fails_at_the_ceiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, paths = _waiting_paths(tmp_path)
    monkeypatch.setattr(kafka, "GRACE_WHILE_LOGGING_SECONDS", 0.5)
    monkeypatch.setattr(kafka, "broker_ready", lambda _port: False)
    started = time.monotonic()
    with pytest.raises(StackError, match="not ready"):
        kafka.wait_ready(cfg, paths, os.getpid(), deadline=started + 0.2)
    assert time.monotonic() - started >= 0.7
