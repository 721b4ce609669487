"""The Graph-compatible server is as strict as Microsoft Graph, driven over HTTP in process."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from devstack.graph_server import GraphServer, GraphState

SCOPE = "https://graph.microsoft.com/.default"
USER = "bob@contoso.example"


PROPERTY = "String {00020329-0000-0000-C000-000000000046} Name KontaktContactId"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> GraphState:
    return GraphState(client_secret="s3cret", clock=clock)


@pytest.fixture
async def http(state: GraphState) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh server, with a token and one provisioned mailbox."""
    app = GraphServer(state)
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


async def folder(client: httpx.AsyncClient, name: str = "K") -> str:
    response = await client.post(f"/v1.0/users/{USER}/contactFolders", json={"displayName": name})
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
    url = f"/v1.0/users/{USER}/contactFolders/{f}/contacts"
    body = (await http.get(url, params={"$top": 5, "$skip": 20})).json()
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


def marked(value: str, prop: str = PROPERTY) -> dict[str, Any]:
    return {"singleValueExtendedProperties": [{"id": prop, "value": value}]}


def recased(prop: str) -> str:
    """The property id with its type and GUID in another case, its Name as it was."""
    kind, guid, name_word, name = prop.split()
    return f"{kind.upper()} {guid.lower()} {name_word} {name}"


def any_of(prop: str, value: str) -> str:
    return f"singleValueExtendedProperties/Any(ep: ep/id eq '{prop}' and ep/value eq '{value}')"


async def test_the_extended_property_filter_compares_as_graph_documents(
    http: httpx.AsyncClient,
) -> None:
    f = await folder(http)
    plain = (await contact(http, f, **marked("Alpha")))["id"]
    quoted = (await contact(http, f, **marked("O'Neil")))["id"]
    url = f"/v1.0/users/{USER}/contactFolders/{f}/contacts"

    async def found(flt: str) -> list[str]:
        response = await http.get(url, params={"$filter": flt})
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["value"]]

    assert await found(any_of(PROPERTY, "Alpha")) == [plain]
    # The value and the type and GUID part of the id compare case-insensitively ...
    assert await found(any_of(recased(PROPERTY), "ALPHA")) == [plain]
    # ... the Name does not.
    assert await found(any_of(PROPERTY.replace("Name Kontakt", "Name kontakt"), "Alpha")) == []
    # A quote inside a literal is doubled.
    assert await found(any_of(PROPERTY, "O''Neil")) == [quoted]


@pytest.mark.parametrize(
    "flt",
    [
        any_of(PROPERTY, "a").replace(
            "and ep/value eq 'a'", "and (ep/value eq 'a' or ep/value eq 'b')"
        ),
        any_of(PROPERTY, "a").replace(" eq 'a'", " ne 'a'"),
        any_of(PROPERTY, "a").replace("ep/value", "ep/id"),
        any_of(PROPERTY, "a").replace("ep: ep/id", "ep: x/id"),
        any_of(PROPERTY, "a'"),
        any_of(PROPERTY, "O'Neil"),
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROPERTY}')",
        "displayName eq 'a'",
        any_of(PROPERTY, "a") + " and givenName eq 'b'",
    ],
)
async def test_any_other_filter_on_contacts_is_400(http: httpx.AsyncClient, flt: str) -> None:
    url = f"/v1.0/users/{USER}/contactFolders/{await folder(http)}/contacts"
    response = await http.get(url, params={"$filter": flt})
    assert response.status_code == 400 and code(response) == "ErrorInvalidUrlQueryFilter"


async def test_expand_returns_only_the_extended_properties_its_filter_names(
    http: httpx.AsyncClient,
) -> None:
    other = PROPERTY.replace("KontaktContactId", "KontaktCategories")
    props = [{"id": PROPERTY, "value": "c1"}, {"id": other, "value": "[]"}]
    item = await contact(http, await folder(http), singleValueExtendedProperties=props)
    url = f"/v1.0/users/{USER}/contacts/{item['id']}"
    expand = f"singleValueExtendedProperties($filter=id eq '{recased(other)}')"
    body = (await http.get(url, params={"$expand": expand, "$select": "id"})).json()
    assert body["singleValueExtendedProperties"] == [props[1]] and "givenName" not in body
    assert "singleValueExtendedProperties" not in (await http.get(url)).json()
    for wrong in ("singleValueExtendedProperties", "categories", expand.replace(" eq", " ne")):
        response = await http.get(url, params={"$expand": wrong})
        assert response.status_code == 400, wrong


async def test_select_of_an_unknown_property_is_400(http: httpx.AsyncClient) -> None:
    f = await folder(http)
    item = await contact(http, f)
    for url in (
        f"/v1.0/users/{USER}/contacts/{item['id']}",
        f"/v1.0/users/{USER}/contactFolders/{f}/contacts",
        f"/v1.0/users/{USER}/contactFolders",
        f"/v1.0/users/{USER}/contactFolders/{f}",
    ):
        assert (await http.get(url, params={"$select": "id,nope"})).status_code == 400, url
        assert (await http.get(url, params={"$select": "id"})).status_code == 200, url


async def test_more_requests_than_the_mailbox_limit_in_the_window_are_429(
    clock: Clock,
) -> None:
    app = GraphServer(
        GraphState(client_secret="s3cret", request_limit=3, request_window=60, clock=clock)
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://graph.test") as client:
        await client.put(f"/_admin/users/{USER}")
        await client.put("/_admin/users/other@contoso.example")
        client.headers["Authorization"] = f"Bearer {await token(client)}"
        url = f"/v1.0/users/{USER}/contactFolders"
        assert [(await client.get(url)).status_code for _ in range(3)] == [200] * 3
        clock.now += 20
        throttled = await client.get(url)
        assert throttled.status_code == 429 and code(throttled) == "ApplicationThrottled"
        assert throttled.headers["Retry-After"] == "40"
        # Another mailbox, and another app on this one, have limits of their own.
        assert (await client.get("/v1.0/users/other@contoso.example/contactFolders")).is_success
        other = {"Authorization": f"Bearer {await token(client, client_id='other-app')}"}
        assert (await client.get(url, headers=other)).is_success
        # Requests in a $batch count one by one.
        batch = {"requests": [{"id": "1", "method": "GET", "url": f"/users/{USER}/contactFolders"}]}
        answer = (await client.post("/v1.0/$batch", json=batch)).json()["responses"][0]
        assert answer["status"] == 429
        clock.now += 40
        assert (await client.get(url)).is_success


async def test_folders_nest_and_answer_by_id(http: httpx.AsyncClient) -> None:
    parent = await folder(http, "Parent")
    base = f"/v1.0/users/{USER}/contactFolders"
    got = await http.get(f"{base}/{parent}")
    assert got.status_code == 200 and got.json()["displayName"] == "Parent"
    made = await http.post(f"{base}/{parent}/childFolders", json={"displayName": "Child"})
    assert made.status_code == 201 and made.json()["parentFolderId"] == parent
    child = made.json()["id"]
    again = await http.post(f"{base}/{parent}/childFolders", json={"displayName": "Child"})
    assert again.status_code == 409
    children = (await http.get(f"{base}/{parent}/childFolders")).json()["value"]
    assert [c["id"] for c in children] == [child]
    # The top level lists only the default folder's children.
    assert [c["id"] for c in (await http.get(base)).json()["value"]] == [parent]
    nested = f"{base}/{parent}/childFolders/{child}/contacts"
    item = await http.post(nested, json={"givenName": "N"})
    assert item.status_code == 201 and item.json()["parentFolderId"] == child
    assert [c["id"] for c in (await http.get(nested)).json()["value"]] == [item.json()["id"]]
    assert (await http.get(f"{base}/{parent}/contacts")).json()["value"] == []
    assert (await http.get(f"{base}/AAMk{'0' * 40}")).status_code == 404
    assert (await http.get(f"{base}/{child}/childFolders/{parent}")).status_code == 404


async def test_a_contact_posted_to_the_mailbox_goes_to_the_default_folder(
    http: httpx.AsyncClient,
) -> None:
    await contact(http, await folder(http))
    made = await http.post(f"/v1.0/users/{USER}/contacts", json={"givenName": "D"})
    assert made.status_code == 201
    listed = (await http.get(f"/v1.0/users/{USER}/contacts")).json()["value"]
    assert [c["id"] for c in listed] == [made.json()["id"]]


async def test_photo_metadata_names_size_and_media_type_or_is_404(
    http: httpx.AsyncClient,
) -> None:
    item = await contact(http, await folder(http))
    url = f"/v1.0/users/{USER}/contacts/{item['id']}/photo"
    assert (await http.get(url)).status_code == 404
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 48)).save(jpeg, "JPEG")
    put = await http.put(
        f"{url}/$value", content=jpeg.getvalue(), headers={"Content-Type": "image/jpeg"}
    )
    assert put.is_success
    meta = (await http.get(url)).json()
    assert (meta["width"], meta["height"]) == (64, 48)
    assert meta["@odata.mediaContentType"] == "image/jpeg"


async def delta_round(
    client: httpx.AsyncClient, url: str, **kwargs: Any
) -> tuple[list[list[dict[str, Any]]], str]:
    """The pages of one delta round and the deltaLink that ends it."""
    pages = []
    while True:
        response = await client.get(url, **kwargs)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["value"])
        assert not ("@odata.nextLink" in body and "@odata.deltaLink" in body)
        if "@odata.deltaLink" in body:
            return pages, str(body["@odata.deltaLink"])
        url, kwargs = body["@odata.nextLink"], {"headers": kwargs.get("headers")}


async def test_delta_pages_the_folder_then_returns_only_what_changed_since(
    http: httpx.AsyncClient,
) -> None:
    f, elsewhere = await folder(http), await folder(http, "Elsewhere")
    items = [(await contact(http, f, givenName=f"n{i}"))["id"] for i in range(5)]
    await contact(http, elsewhere)
    url = f"/v1.0/users/{USER}/contactFolders/{f}/contacts/delta"
    prefer = {"Prefer": "odata.maxpagesize=2"}
    pages, link = await delta_round(http, url, params={"$select": "givenName"}, headers=prefer)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(c["id"] for p in pages for c in p) == sorted(items)
    assert all(set(c) <= {"id", "givenName", "@odata.etag"} for p in pages for c in p)
    assert (await delta_round(http, link))[0] == [[]]

    # Since the round: one item changed, one deleted, one moved out, one made.
    await http.patch(f"/v1.0/users/{USER}/contacts/{items[0]}", json={"givenName": "renamed"})
    await http.delete(f"/v1.0/users/{USER}/contacts/{items[1]}")
    moved = await http.post(
        f"/_admin/users/{USER}/contacts/{items[2]}/move", json={"destinationId": elsewhere}
    )
    assert moved.status_code == 204
    new = (await contact(http, f))["id"]
    pages, following = await delta_round(http, link)
    changes = {c["id"]: c for p in pages for c in p}
    assert set(changes) == {items[0], items[1], items[2], new}
    assert changes[items[0]]["givenName"] == "renamed" and "surname" not in changes[items[0]]
    assert changes[items[1]]["@removed"] == {"reason": "deleted"}
    assert changes[items[2]]["@removed"] == {"reason": "deleted"}
    assert "@removed" not in changes[new]
    assert (await delta_round(http, following))[0] == [[]]


async def test_an_unknown_or_expired_delta_token_is_410_with_the_initial_query(
    http: httpx.AsyncClient,
) -> None:
    f = await folder(http)
    await contact(http, f)
    url = f"/v1.0/users/{USER}/contactFolders/{f}/contacts/delta"
    gone = await http.get(url, params={"$deltatoken": "never-issued"})
    assert gone.status_code == 410 and code(gone) == "SyncStateNotFound"
    assert gone.headers["Location"].endswith(url)
    assert (await http.get(url, params={"$skiptoken": "never-issued"})).status_code == 410
    _, link = await delta_round(http, url)
    assert (await http.post("/_admin/delta/expire")).status_code == 204
    assert (await http.get(link)).status_code == 410
    # An empty $deltatoken is the initial query.
    assert len((await http.get(url, params={"$deltatoken": ""})).json()["value"]) == 1
    assert (await http.get(url, params={"$filter": "givenName eq 'A'"})).status_code == 400
    assert (await http.get(url, params={"$select": "nope"})).status_code == 400
