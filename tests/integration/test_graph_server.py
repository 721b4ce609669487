"""The Graph-compatible server is as strict as Microsoft Graph, driven over HTTP in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from devstack.graph_server import GraphServer, GraphState

SCOPE = "https://graph.microsoft.com/.default"
USER = "bob@contoso.example"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh server, with a token and one provisioned mailbox."""
    app = GraphServer(GraphState(client_secret="s3cret"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://graph.test") as client:
        assert (await client.put(f"/_admin/users/{USER}")).status_code == 204
        client.headers["Authorization"] = f"Bearer {await token(client)}"
        yield client


async def token(client: httpx.AsyncClient, **form: str) -> str:
    response = await client.post(
        "/tenant/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "app",
            "client_secret": "s3cret",
            "scope": SCOPE,
            **form,
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def folder(client: httpx.AsyncClient) -> str:
    response = await client.post(f"/v1.0/users/{USER}/contactFolders", json={"displayName": "K"})
    assert response.status_code == 201
    return str(response.json()["id"])


async def contact(client: httpx.AsyncClient, folder_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(
        f"/v1.0/users/{USER}/contactFolders/{folder_id}/contacts",
        json={"givenName": "A", **body},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def test_contacts_come_ten_to_a_page_with_a_next_link_honouring_top_and_skip(
    http: httpx.AsyncClient,
) -> None:
    f = await folder(http)
    made = sorted([(await contact(http, f, givenName=f"n{i}"))["id"] for i in range(23)])
    url: str | None = f"/v1.0/users/{USER}/contactFolders/{f}/contacts"
    pages = []
    while url:
        body = (await http.get(url)).json()
        pages.append([c["id"] for c in body["value"]])
        url = body.get("@odata.nextLink")
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [i for p in pages for i in p] == made
    body = (await http.get(f"/v1.0/users/{USER}/contacts", params={"$top": 5, "$skip": 20})).json()
    assert [c["id"] for c in body["value"]] == made[20:] and "@odata.nextLink" not in body


async def test_a_stale_etag_in_if_match_is_refused_with_412(http: httpx.AsyncClient) -> None:
    item = await contact(http, await folder(http))
    stale = item["@odata.etag"]
    url = f"/v1.0/users/{USER}/contacts/{item['id']}"
    updated = await http.patch(url, json={"surname": "B"}, headers={"If-Match": stale})
    assert updated.status_code == 200 and updated.json()["@odata.etag"] != stale
    again = await http.patch(url, json={"surname": "C"}, headers={"If-Match": stale})
    assert again.status_code == 412 and code(again) == "ErrorIrresolvableConflict"
    gone = await http.delete(url, headers={"If-Match": stale})
    assert gone.status_code == 412


async def test_a_wrong_json_type_or_an_unknown_property_is_400(http: httpx.AsyncClient) -> None:
    url = f"/v1.0/users/{USER}/contactFolders/{await folder(http)}/contacts"
    for body in ({"givenName": 5}, {"categories": "x"}, {"emailAddresses": ["a@x"]}, {"x": 1}):
        response = await http.post(url, json=body)
        assert response.status_code == 400 and code(response) == "RequestBodyRead", body


async def test_create_and_update_answer_the_whole_item(http: httpx.AsyncClient) -> None:
    item = await contact(http, await folder(http), surname="S", jobTitle="CTO")
    assert {"id", "@odata.etag", "givenName", "surname", "jobTitle", "changeKey"} <= set(item)
    response = await http.patch(f"/v1.0/users/{USER}/contacts/{item['id']}", json={"surname": "T"})
    assert response.json()["givenName"] == "A" and response.json()["jobTitle"] == "CTO"


async def test_a_request_over_4_mb_is_413(http: httpx.AsyncClient) -> None:
    item = await contact(http, await folder(http))
    response = await http.put(
        f"/v1.0/users/{USER}/contacts/{item['id']}/photo/$value",
        content=b"x" * (4 * 1024 * 1024 + 1),
        headers={"Content-Type": "image/jpeg"},
    )
    assert response.status_code == 413


async def test_a_contacts_photo_cannot_be_deleted(http: httpx.AsyncClient) -> None:
    item = await contact(http, await folder(http))
    url = f"/v1.0/users/{USER}/contacts/{item['id']}/photo/$value"
    assert (await http.put(url, content=b"jpg", headers={"Content-Type": "image/jpeg"})).is_success
    assert (await http.delete(url)).status_code == 405
    assert (await http.get(url)).content == b"jpg"


async def test_at_most_three_emails_and_two_business_phones(http: httpx.AsyncClient) -> None:
    url = f"/v1.0/users/{USER}/contactFolders/{await folder(http)}/contacts"
    emails = [{"address": f"a{i}@x.example"} for i in range(4)]
    assert (await http.post(url, json={"emailAddresses": emails})).status_code == 400
    assert (await http.post(url, json={"businessPhones": ["1", "2", "3"]})).status_code == 400
    ok = {"emailAddresses": emails[:3], "businessPhones": ["1", "2"]}
    assert (await http.post(url, json=ok)).status_code == 201


async def test_batch_rules_are_enforced(http: httpx.AsyncClient) -> None:
    item = await contact(http, await folder(http))
    get = {"method": "GET", "url": f"/users/{USER}/contacts/{item['id']}"}

    async def batch(requests: list[dict[str, Any]]) -> httpx.Response:
        return await http.post("/v1.0/$batch", json={"requests": requests})

    too_many = [{"id": str(i), **get} for i in range(21)]
    assert (await batch(too_many)).status_code == 400
    assert (await batch([{"id": "1", **get}, {"id": "1", **get}])).status_code == 400
    patch = {
        "id": "1",
        "method": "PATCH",
        "url": f"/users/{USER}/contacts/{item['id']}",
        "body": {"surname": "X"},
    }
    assert (await batch([patch])).status_code == 400
    assert (await batch([{"id": "1", "dependsOn": ["9"], **get}])).status_code == 400
    failing = {"id": "1", "method": "GET", "url": f"/users/{USER}/contacts/AAMk{'0' * 40}"}
    response = await batch([failing, {"id": "2", "dependsOn": ["1"], **get}])
    statuses = {r["id"]: r["status"] for r in response.json()["responses"]}
    assert response.status_code == 200 and statuses == {"1": 404, "2": 424}
    typed = {**patch, "headers": {"Content-Type": "application/json"}}
    assert (await batch([typed])).json()["responses"][0]["status"] == 200


async def test_a_malformed_id_is_400_and_an_unknown_one_404(http: httpx.AsyncClient) -> None:
    malformed = await http.get(f"/v1.0/users/{USER}/contacts/not*an*id")
    assert malformed.status_code == 400 and code(malformed) == "ErrorInvalidIdMalformed"
    unknown = await http.get(f"/v1.0/users/{USER}/contacts/AAMk{'0' * 40}")
    assert unknown.status_code == 404 and code(unknown) == "ErrorItemNotFound"


async def test_an_unknown_mailbox_is_404_not_a_new_empty_one(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1.0/users/nobody@contoso.example/contactFolders")
    assert response.status_code == 404 and code(response) == "ErrorInvalidUser"
    assert (await http.get(f"/v1.0/users/{USER}/contactFolders")).json() == {"value": []}


async def test_every_answer_carries_request_ids(http: httpx.AsyncClient) -> None:
    response = await http.get(
        f"/v1.0/users/{USER}/contactFolders", headers={"client-request-id": "abc"}
    )
    assert response.headers["client-request-id"] == "abc" and response.headers["request-id"]
    error = await http.get("/v1.0/users/nobody@contoso.example/contacts")
    assert error.json()["error"]["innerError"]["request-id"] == error.headers["request-id"]


async def test_the_token_needs_the_client_secret_and_a_default_scope(
    http: httpx.AsyncClient,
) -> None:
    url = "/tenant/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": "app", "scope": SCOPE}
    assert (await http.post(url, data=form)).status_code == 401
    wrong = {**form, "client_secret": "guess"}
    assert (await http.post(url, data=wrong)).status_code == 401
    scoped = {**form, "client_secret": "s3cret", "scope": "Contacts.ReadWrite"}
    assert (await http.post(url, data=scoped)).json()["error"] == "invalid_scope"
    assert await token(http)


async def test_a_fifth_concurrent_request_of_one_app_and_mailbox_is_429(
    http: httpx.AsyncClient,
) -> None:
    f = await folder(http)
    http.headers["Content-Type"] = "application/json"
    url = f"/v1.0/users/{USER}/contactFolders/{f}/contacts"
    answers = await asyncio.gather(*(http.get(url) for _ in range(5)))
    throttled = [a for a in answers if a.status_code == 429]
    assert len(throttled) == 1 and throttled[0].headers["Retry-After"]
    other = {"Authorization": f"Bearer {await token(http, client_id='other-app')}"}
    answers = await asyncio.gather(
        *(http.get(url) for _ in range(4)), *(http.get(url, headers=other) for _ in range(4))
    )
    assert all(a.status_code == 200 for a in answers)
