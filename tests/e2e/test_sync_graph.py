"""The Graph client against the Graph-compatible server, as real processes over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from pydantic import SecretStr

from services.sync.domain import Snapshot, render_contact
from services.sync.graph import GraphClient, GraphPermanentError
from shared.settings import KontaktSettings
from tests.conftest import MEASURED
from tests.support import kontakt_server


@pytest.fixture(scope="module")
def graph_url(
    settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`kontakt graph-server` as its own process; yields its base URL."""
    log = tmp_path_factory.mktemp("graph") / "graph-server.log"
    args = ["graph-server"]
    with kontakt_server(args, settings_env, log, "/_admin/stats") as base:
        yield base


@pytest.fixture
async def graph(graph_url: str, settings: KontaktSettings) -> AsyncIterator[GraphClient]:
    """A Graph client configured for the server, with faults off and counters reset."""
    httpx.put(f"{graph_url}/_admin/faults", json={"rate": 0})
    httpx.post(f"{graph_url}/_admin/stats/reset")
    client = GraphClient(
        settings.model_copy(
            update={
                "sync_graph_base_url": f"{graph_url}/v1.0",
                "sync_graph_authority": graph_url,
                "sync_graph_client_id": "kontakt-tests",
                "sync_graph_client_secret": SecretStr("kontakt-tests-secret"),
                "sync_graph_timeout_seconds": 1.0,
                "sync_graph_backoff_seconds": 0.05,
                "sync_graph_max_attempts": 12,
            }
        )
    )
    yield client
    await client.aclose()


def mailbox(graph_url: str) -> str:
    """A new mailbox, provisioned on the server (unknown mailboxes are 404)."""
    user = f"u-{uuid4().hex[:8]}"
    assert httpx.put(f"{graph_url}/_admin/users/{user}").status_code == 204
    return user


def stats(graph_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{graph_url}/_admin/stats").json())


def body(n_emails: int = 1) -> dict[str, Any]:
    snap = Snapshot(uuid4(), uuid4(), 1, "current", "Acme", {"first_names": "A"}, (), None)
    out = render_contact(snap)
    out["emailAddresses"] = [{"address": f"a{i}@x.example"} for i in range(n_emails)]
    return out


async def test_retry_after_is_honoured(graph: GraphClient, graph_url: str) -> None:
    httpx.put(f"{graph_url}/_admin/faults", json={"retry_after": 1.5, "script": ["429"]})
    user = mailbox(graph_url)
    started = time.monotonic()
    await graph.ensure_folder(user)
    waited = time.monotonic() - started
    MEASURED.append(f"sync: Retry-After 1.5s answered by a wait of {waited:.2f}s")
    assert graph.retry_after_waits == [1.5]
    assert waited >= 1.5  # a lower bound only: never sooner than Graph asked


async def test_graph_rejects_a_fourth_email_address_with_400(
    graph: GraphClient, graph_url: str
) -> None:
    user = mailbox(graph_url)
    folder = await graph.ensure_folder(user)
    with pytest.raises(GraphPermanentError) as err:
        await graph.create_contact(user, folder, body(n_emails=4))
    assert err.value.status == 400 and err.value.code == "ErrorInvalidArgument"
    assert await graph.create_contact(user, folder, body(n_emails=3))


async def test_the_client_keeps_to_four_requests_in_flight_per_mailbox(
    graph: GraphClient, graph_url: str
) -> None:
    user = mailbox(graph_url)
    folder = await graph.ensure_folder(user)
    # Slow answers make requests overlap; the server rejects a fifth concurrent one.
    httpx.put(
        f"{graph_url}/_admin/faults", json={"rate": 0.5, "kinds": ["slow"], "slow_seconds": 0.2}
    )
    await asyncio.gather(*(graph.create_contact(user, folder, body()) for _ in range(24)))
    s = stats(graph_url)
    assert s["concurrency_rejections"] == 0 and s["max_inflight"] <= 4
    # Without the client's limit the same server does reject: the check above is real.
    token = await graph.tokens.token()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as raw:
        await asyncio.gather(
            *(raw.get(f"{graph_url}/v1.0/users/{user}/contacts") for _ in range(24))
        )
    assert stats(graph_url)["concurrency_rejections"] > 0


async def test_503_timeouts_and_dropped_connections_are_retried(
    graph: GraphClient, graph_url: str
) -> None:
    user = mailbox(graph_url)
    folder = await graph.ensure_folder(user)
    gid = await graph.create_contact(user, folder, body())
    httpx.put(
        f"{graph_url}/_admin/faults",
        json={
            "rate": 0.5,
            "kinds": ["503", "drop", "slow", "429"],
            "slow_seconds": 1.5,
            "retry_after": 0.1,
            "seed": 7,
        },
    )
    for i in range(12):
        await graph.update_contact(user, gid, {"jobTitle": f"t{i}"})
    httpx.put(f"{graph_url}/_admin/faults", json={"rate": 0})
    items = httpx.get(f"{graph_url}/_admin/users/{user}/contacts").json()["value"]
    s = stats(graph_url)
    assert items[0]["jobTitle"] == "t11" and s["faults"] > 0
    MEASURED.append(f"sync: 12 PATCHes survived {s['faults']} injected faults")


async def test_a_forbidden_mailbox_fails_at_once_without_retries(
    graph: GraphClient, graph_url: str
) -> None:
    user = mailbox(graph_url)
    httpx.put(f"{graph_url}/_admin/forbidden/{user}")
    with pytest.raises(GraphPermanentError) as err:
        await graph.ensure_folder(user)
    assert err.value.status == 403 and stats(graph_url)["requests"] == 1


async def test_the_token_is_cached_and_renewed_before_it_expires(
    graph: GraphClient, graph_url: str
) -> None:
    httpx.put(f"{graph_url}/_admin/token-ttl/2")
    try:
        user = mailbox(graph_url)
        await graph.ensure_folder(user)
        await graph.find_contacts(user, await graph.ensure_folder(user), ["x"])
        assert graph.tokens.fetched == 1
        await asyncio.sleep(2.1)
        await graph.find_contacts(user, await graph.ensure_folder(user), ["x"])
        assert graph.tokens.fetched == 2 and stats(graph_url).get("token_requests") == 2
    finally:
        httpx.put(f"{graph_url}/_admin/token-ttl/3599")


async def test_items_are_found_by_their_crm_id_and_deleted_in_batches(
    graph: GraphClient, graph_url: str
) -> None:
    user = mailbox(graph_url)
    folder = await graph.ensure_folder(user)
    bodies = [body() for _ in range(25)]
    ids = [await graph.create_contact(user, folder, b) for b in bodies]
    crm = [b["singleValueExtendedProperties"][0]["value"] for b in bodies[:2]]
    assert await graph.find_contacts(user, folder, crm) == sorted(ids[:2])
    httpx.delete(f"{graph_url}/_admin/users/{user}/contacts/{ids[3]}")  # gone already
    httpx.post(f"{graph_url}/_admin/stats/reset")
    statuses = await graph.delete_contacts(user, ids)
    assert statuses[ids[3]] == 404 and {statuses[i] for i in ids if i != ids[3]} == {204}
    assert httpx.get(f"{graph_url}/_admin/users/{user}/contacts").json()["value"] == []
    assert stats(graph_url)["batches"] >= 2  # 25 deletions: at most 20 per $batch


async def test_a_quote_in_the_folder_name_or_a_crm_id_is_escaped_in_the_filters(
    graph: GraphClient, graph_url: str
) -> None:
    user = mailbox(graph_url)
    graph.settings = graph.settings.model_copy(update={"sync_folder_name": "Kontakt's"})
    folder = await graph.ensure_folder(user)
    graph.forget_folder(user)
    assert await graph.ensure_folder(user) == folder  # found again by its name
    quoted = body()
    quoted["singleValueExtendedProperties"][0]["value"] = "o'neil"
    made = await graph.create_contact(user, folder, quoted)
    await graph.create_contact(user, folder, body())
    # Values compare case-insensitively, as in Graph.
    assert await graph.find_contacts(user, folder, ["O'Neil", "missing"]) == [made]
