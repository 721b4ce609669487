"""Near duplicates on the real PostgreSQL: the 409, distinct_from, the listings, concurrency."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import psycopg
from fastapi.testclient import TestClient

from services.contacts.application import ContactsApp
from services.contacts.domain import Actor, PossibleDuplicateError
from services.contacts.relay import Relay
from services.contacts.store import NEAR_KEY_BACKFILL, backfill_near_keys_once
from shared.contract.contacts import ContactDetailsChanged, parse_contact_event
from shared.settings import KontaktSettings
from tests.integration.test_contacts_concurrency import run_together
from tests.kafka_helpers import read_topic, topic_suffix
from tests.support import relay_until_caught_up, save_as_before_near_keys

ALICE = Actor("alice", "corr")


def post(client: TestClient, company_id: str, first: str, last: str = "Hansen", **more: Any):
    body = {
        "company_id": company_id,
        "company_name": "Acme A/S",
        "first_names": first,
        "last_names": last,
        **more,
    }
    return client.post("/contacts", json=body)


def created(client: TestClient, company_id: str, first: str, **more: Any) -> str:
    response = post(client, company_id, first, **more)
    assert response.status_code == 201, response.text
    contact_id: str = response.json()["contact_id"]
    return contact_id


def test_danish_spellings_of_a_current_name_are_409_possible_duplicate(
    client: TestClient,
) -> None:
    for existing, new in [
        ("Jørgen", "Joergen"),
        ("Åse", "Aase"),
        ("Ærling", "Aerling"),
        ("Jørgen Strauß", "Joergen Strauss"),
        ("Østergaard", "Oe\u200bstergaard"),
    ]:
        company = str(uuid4())
        first = created(client, company, existing)
        response = post(client, company, new)
        assert response.status_code == 409, (existing, new, response.text)
        body = response.json()
        assert body["error"] == "possible_duplicate" and "distinct_from" in body["detail"]
        assert body["candidates"] == [
            {
                "contact_id": first,
                "first_names": existing,
                "last_names": "Hansen",
                "matched": ["name"],
                "declared_distinct": False,
            }
        ]


def test_exact_duplicates_stay_refused_as_duplicates(client: TestClient) -> None:
    company = str(uuid4())
    first = created(client, company, "Strauß")
    for same in ("Strauss", "STRAU\u200bSS"):
        response = post(client, company, same, distinct_from=[first])
        assert response.status_code == 409, response.text
        assert response.json()["field"] == "name"
        assert response.json()["existing_contact_id"] == first


def test_the_same_phone_in_another_format_is_a_possible_duplicate(client: TestClient) -> None:
    company = str(uuid4())
    first = created(client, company, "Karen", work_phone="+45 12 34 56 78")
    response = post(client, company, "Bente", "Olsen", private_phone="12 34 56 78")
    assert response.status_code == 409, response.text
    assert [(c["contact_id"], c["matched"]) for c in response.json()["candidates"]] == [
        (first, ["phone"])
    ]


def test_at_another_company_a_look_alike_is_no_duplicate(client: TestClient) -> None:
    created(client, str(uuid4()), "Jørgen", work_phone="12345678")
    created(client, str(uuid4()), "Joergen", work_phone="12345678")


def test_distinct_from_is_accepted_and_recorded_on_the_event_and_the_contract(
    client: TestClient,
) -> None:
    company = str(uuid4())
    first = created(client, company, "Åse")
    second = created(client, company, "Aase", distinct_from=[first])
    [event] = client.get(f"/contacts/{second}/events").json()
    assert event["type"] == "ContactCreated" and event["data"]["distinct_from"] == [first]
    listed = client.get(f"/contacts/{second}/possible-duplicates").json()["candidates"]
    assert [(c["contact_id"], c["declared_distinct"]) for c in listed] == [(first, True)]


def test_a_rename_into_a_near_duplicate_is_409_unless_declared(client: TestClient) -> None:
    company = str(uuid4())
    first = created(client, company, "Ærling")
    other = created(client, company, "Bodil")
    response = client.patch(f"/contacts/{other}", json={"first_names": "Aerling"})
    assert response.status_code == 409 and response.json()["error"] == "possible_duplicate"
    assert client.get(f"/contacts/{other}").json()["first_names"] == "Bodil"
    response = client.patch(
        f"/contacts/{other}", json={"first_names": "Aerling", "distinct_from": [first]}
    )
    assert response.status_code == 200, response.text
    history = client.get(f"/contacts/{other}/history").json()
    assert history[-1]["data"]["distinct_from"] == [first]


def test_the_listing_and_the_question_before_creating(client: TestClient) -> None:
    company = str(uuid4())
    first = created(client, company, "Jørgen", work_phone="+45 87 65 43 21")
    assert client.get(f"/contacts/{first}/possible-duplicates").json() == {"candidates": []}
    asked = client.get(
        f"/companies/{company}/possible-duplicates",
        params={"first_names": "Joergen", "last_names": "HANSEN"},
    )
    assert asked.status_code == 200, asked.text
    assert [c["contact_id"] for c in asked.json()["candidates"]] == [first]
    by_phone = client.get(
        f"/companies/{company}/possible-duplicates", params={"phone": "87654321"}
    ).json()["candidates"]
    assert [(c["contact_id"], c["matched"]) for c in by_phone] == [(first, ["phone"])]
    elsewhere = client.get(
        f"/companies/{uuid4()}/possible-duplicates",
        params={"first_names": "Jørgen", "last_names": "Hansen"},
    )
    assert elsewhere.json() == {"candidates": []}
    only_one_name = {"first_names": "Jørgen"}
    response = client.get(f"/companies/{company}/possible-duplicates", params=only_one_name)
    assert response.status_code == 422
    bad_phone = client.get(f"/companies/{company}/possible-duplicates", params={"phone": "x"})
    assert (
        bad_phone.status_code == 422 and bad_phone.json()["errors"][0]["field"] == "query.phone.0"
    )
    assert client.get(f"/contacts/{uuid4()}/possible-duplicates").status_code == 404


def test_parallel_near_duplicate_creates_let_at_most_one_through(
    contacts: ContactsApp,
) -> None:
    company = uuid4()
    spellings = ["Jørgen", "Joergen", "Jörgen", "JOERGEN", "jørgen", "Jorgen"]
    results = run_together(
        len(spellings),
        lambda i: contacts.create_contact(
            ALICE,
            company_id=company,
            company_name="Acme",
            details={"first_names": spellings[i], "last_names": "Bak"},
        ),
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert any(isinstance(r, PossibleDuplicateError) for r in results), results
    # The rest lost to the exact key or the near key, each naming the winner.
    for loser in results:
        if isinstance(loser, PossibleDuplicateError):
            assert [c.contact_id for c in loser.candidates] == [winners[0].contact_id]
        elif isinstance(loser, Exception):
            assert getattr(loser, "existing_id", None) == winners[0].contact_id, loser


def test_the_backfill_runs_once_and_gives_earlier_contacts_their_keys(
    contacts: ContactsApp, settings: KontaktSettings
) -> None:
    company = uuid4()
    earlier = save_as_before_near_keys(contacts, company, "Søren", "Bak")
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        conn.execute("DELETE FROM contacts_backfills WHERE name = %s", (NEAR_KEY_BACKFILL,))
    seen = backfill_near_keys_once(contacts, settings)
    assert seen is not None and seen >= 1
    assert backfill_near_keys_once(contacts, settings) is None  # recorded as done
    asked = contacts.possible_duplicates_of(company, "Soeren", "Bak")
    assert [c.contact_id for c in asked] == [earlier]


async def test_distinct_from_goes_on_contacts_events_and_the_keys_stay_off_it(
    contacts: ContactsApp, settings: KontaktSettings
) -> None:
    own = settings.model_copy(update={"contacts_topic": f"contacts.events.{topic_suffix()}"})
    company = uuid4()

    def make(first: str, distinct_from: list[UUID] | None = None) -> UUID:
        return contacts.create_contact(
            ALICE,
            company_id=company,
            company_name="Acme",
            details={"first_names": first, "last_names": "Dahl"},
            distinct_from=distinct_from,
        ).contact_id

    first, second = make("Åse"), make("Bo")
    third = make("Aase", distinct_from=[first])
    contacts.change_details(ALICE, second, {"first_names": "Bodil"})  # no look-alike: no question
    contacts.change_details(ALICE, second, {"first_names": "Åsé"}, distinct_from=[first, third])
    await relay_until_caught_up(Relay(own, contacts), contacts)
    records = await read_topic(own.kafka_bootstrap, own.contacts_topic)
    # Every message is a contact event: the near-duplicate keys' events are not published.
    events = [parse_contact_event(r.value) for r in records]
    mine = {(e.contact_id, e.type): e.data for e in events if e.contact_id in (second, third)}
    assert mine[(third, "ContactCreated")].distinct_from == [first]  # type: ignore[union-attr]
    renamed = [
        e.data for e in events if e.contact_id == second and isinstance(e, ContactDetailsChanged)
    ]
    assert [d.distinct_from for d in renamed] == [[], sorted([first, third])]
