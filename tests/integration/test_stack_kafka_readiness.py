"""The local stack's Kafka readiness probe against the real broker and against non-brokers."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from devstack import kafka
from devstack import stack as launcher
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
