"""The Graph client's retries: one level per request path, Retry-After honoured (no server)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from services.sync.graph import GraphClient, GraphPermanentError, GraphTransientError
from shared.settings import KontaktSettings

SETTINGS = KontaktSettings(
    sync_graph_base_url="http://graph.test/v1.0",
    sync_graph_authority="http://graph.test",
    sync_graph_max_attempts=6,
    sync_graph_backoff_seconds=0.5,
)


class Graph:
    """A scripted Graph: the token endpoint answers; other requests get the next answer."""

    def __init__(self, answers: list[httpx.Response]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        self.calls.append(request.url.path)
        return self.answers.pop(0) if self.answers else httpx.Response(200, json={})


def client(graph: Graph) -> tuple[GraphClient, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    http = httpx.AsyncClient(transport=httpx.MockTransport(graph))
    return GraphClient(SETTINGS, http=http, sleep=sleep), slept


def batch_answer(statuses: dict[str, int], retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    responses = [{"id": i, "status": s, "headers": headers} for i, s in statuses.items()]
    return httpx.Response(200, content=json.dumps({"responses": responses}).encode())


def recorded_batches(graph_client: GraphClient) -> list[Any]:
    """The JSON bodies of the $batch requests the client sends from now on."""
    sent: list[Any] = []
    original = graph_client.http.request

    async def recording(method: str, url: Any, **kwargs: Any) -> httpx.Response:
        if str(url).endswith("/$batch"):
            sent.append(kwargs["json"])
        return await original(method, url, **kwargs)

    graph_client.http.request = recording  # type: ignore[method-assign]
    return sent


DELETES = [{"id": str(i), "method": "DELETE", "url": f"/users/u/contacts/{i}"} for i in range(3)]


async def test_a_batch_that_keeps_failing_costs_at_most_the_configured_attempts() -> None:
    graph = Graph([httpx.Response(503) for _ in range(50)])
    graph_client, _ = client(graph)
    with pytest.raises(GraphTransientError):
        await graph_client.batch("u", DELETES)
    assert len(graph.calls) == SETTINGS.sync_graph_max_attempts


async def test_requests_of_a_batch_still_throttled_after_the_last_round_end_as_503() -> None:
    graph = Graph(
        [batch_answer({"0": 204, "1": 429, "2": 424})]
        + [batch_answer({"1": 429, "2": 424}) for _ in range(10)]
    )
    graph_client, _ = client(graph)
    results = await graph_client.batch("u", DELETES)
    assert {i: r.status for i, r in results.items()} == {"0": 204, "1": 503, "2": 503}
    assert len(graph.calls) == SETTINGS.sync_graph_max_attempts


async def test_a_batch_round_waits_the_longest_retry_after_then_sends_only_what_failed() -> None:
    graph = Graph([batch_answer({"0": 204, "1": 429, "2": 424}, "1.5"), batch_answer({})])
    graph_client, slept = client(graph)
    sent = recorded_batches(graph_client)
    results = await graph_client.batch("u", DELETES)
    assert results["0"].status == 204 and len(graph.calls) == 2
    assert slept and slept[0] >= 1.5 and graph_client.retry_after_waits == [1.5, 1.5]
    assert [r["id"] for r in sent[1]["requests"]] == ["1", "2"]


async def test_a_single_request_honours_retry_after_with_a_little_jitter_on_top() -> None:
    graph = Graph([httpx.Response(429, headers={"Retry-After": "1.5"})])
    graph_client, slept = client(graph)
    await graph_client.request("u", "GET", "/users/u/contactFolders")
    assert len(slept) == 1 and 1.5 <= slept[0] <= 1.70
    assert len(graph.calls) == 2


async def test_a_permanent_answer_is_not_retried() -> None:
    graph = Graph([httpx.Response(403, json={"error": {"code": "ErrorAccessDenied"}})])
    graph_client, slept = client(graph)
    with pytest.raises(GraphPermanentError):
        await graph_client.request("u", "GET", "/users/u/contactFolders")
    assert slept == [] and len(graph.calls) == 1


async def test_a_refused_token_is_renewed_and_the_request_sent_again_at_once() -> None:
    graph = Graph([httpx.Response(401)])
    graph_client, slept = client(graph)
    await graph_client.request("u", "GET", "/users/u/contactFolders")
    assert len(graph.calls) == 2 and graph_client.tokens.fetched == 2 and sum(slept) == 0


async def test_the_deletes_of_a_batch_go_unchained_since_none_depends_on_another() -> None:
    graph = Graph([batch_answer({"0": 204, "1": 404, "2": 204})])
    graph_client, _ = client(graph)
    sent = recorded_batches(graph_client)
    statuses = await graph_client.delete_contacts("u", ["a", "b", "c"])
    assert statuses == {"a": 204, "b": 404, "c": 204}
    assert all("dependsOn" not in r for r in sent[0]["requests"])


async def test_every_request_asks_for_immutable_ids_and_keeps_one_client_request_id() -> None:
    seen: list[httpx.Headers] = []
    answers = [httpx.Response(503), httpx.Response(200, json={}), httpx.Response(200, json={})]

    def graph(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        seen.append(request.headers)
        return answers.pop(0)

    http = httpx.AsyncClient(transport=httpx.MockTransport(graph))

    async def sleep(seconds: float) -> None:
        return None

    graph_client = GraphClient(SETTINGS, http=http, sleep=sleep)
    await graph_client.request("u", "GET", "/users/u/contactFolders")
    await graph_client.request("u", "GET", "/users/u/contactFolders")
    assert all(h["Prefer"] == 'IdType="ImmutableId"' for h in seen)
    ids = [h["client-request-id"] for h in seen]
    assert len(ids) == 3 and ids[0] == ids[1] != ids[2]
