"""How every process runs: stopped by signals, serving one set of health and status routes,
started by a CLI whose tree is composed in one place."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import httpx
import pytest
import typer

from shared.lifecycle import stop_on_signals
from shared.observability import health_app


def test_the_first_sigterm_sets_stop_and_a_second_sigint_stops_at_once() -> None:
    forced: list[bool] = []

    async def scenario() -> tuple[bool, bool]:
        stop = stop_on_signals(on_again=lambda: forced.append(True))
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), timeout=5)
        before = bool(forced)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(50):
            if forced:
                break
            await asyncio.sleep(0.01)
        return before, bool(forced)

    assert asyncio.run(scenario()) == (False, True)


async def _ok() -> None:
    return None


def _get(app: Any, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://health") as client:
            return await client.get(path)

    return asyncio.run(call())


def test_a_process_serves_what_it_knows_of_itself_at_status() -> None:
    async def status() -> dict[str, Any]:
        return {"relay": {"active": True, "position": 7}}

    app = health_app("relay", _ok, status=status)
    answer = _get(app, "/status")
    assert answer.status_code == 200 and answer.json() == {"relay": {"active": True, "position": 7}}
    assert _get(app, "/health/ready").json() == {"status": "ok", "service": "relay"}
    assert _get(app, "/metrics").status_code == 200


def test_a_status_that_needs_an_unreachable_server_is_a_503_in_the_health_shape() -> None:
    async def status() -> dict[str, Any]:
        raise ConnectionRefusedError("no database")

    answer = _get(health_app("sync", _ok, status=status), "/status")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable" and "no database" in answer.json()["detail"]


def test_status_takes_each_part_from_the_service_that_says_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.cli import status as ops
    from shared.settings import KontaktSettings

    settings = KontaktSettings()
    db = settings.pg_address()
    said = {
        "contacts API": {"database": db, "store": {"newest_position": 10}},
        "relay": {"database": db, "relay": {"active": True, "position": 8, "updated_at": None}},
        "query API": {"database": db, "read_models": {"contacts": {"position": 6}}},
        "sync worker": {"database": db, "sync": {"pending_links": 1, "failed_links": 0,
                                                 "unpublished_outcomes": 2}},
    }  # fmt: skip

    async def ask(_: KontaktSettings) -> dict[str, dict[str, Any]]:
        return said

    monkeypatch.setattr(ops, "_ask_services", ask)
    report = asyncio.run(ops._store_status(settings))
    assert not isinstance(report, str), report
    assert report["store"] == {"newest_position": 10}
    assert report["relay"]["lag"] == 2 and report["relay"]["active"] is True
    assert report["read_models"]["contacts"] == {"position": 6, "behind_store": 4}
    assert report["sync"]["unpublished_outcomes"] == 2
    assert report["answered_by"] == {
        "store": "contacts API", "relay": "relay", "read_models": "query API",
        "sync": "sync worker",
    }  # fmt: skip


def test_the_command_tree_is_composed_in_one_place_with_every_command() -> None:
    from services.cli import app

    root = typer.main.get_group(app)
    assert {"history", "as-of", "replay", "status", "relay", "serve", "projections",
            "sync", "keys", "token", "topics", "contract"} <= set(root.commands)  # fmt: skip
    projections = root.commands["projections"]
    assert {"worker", "query", "rebuild", "lag", "dlq"} <= set(projections.commands)  # type: ignore[attr-defined]
    assert {"worker", "resync", "dlq"} <= set(root.commands["sync"].commands)  # type: ignore[attr-defined]
