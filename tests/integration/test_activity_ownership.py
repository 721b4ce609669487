"""The Activities tab follows who held an address when an e-mail was sent (real pipeline)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from services.contacts.export import StoreReader
from services.projections.rebuild import rebuild_contacts
from services.projections.sql import contacts as contacts_sql
from shared.settings import KontaktSettings
from tests.integration.test_contact_page import email
from tests.pipeline import Pipeline, pipeline


async def moment() -> datetime:
    """Now, a little apart from the command before and the one after."""
    await asyncio.sleep(0.02)
    at = datetime.now(UTC)
    await asyncio.sleep(0.02)
    return at


async def create(p: Pipeline, company_id: str, first: str, **fields: Any) -> str:
    body = {
        "company_id": company_id,
        "company_name": "Firma A/S",
        "first_names": first,
        "last_names": "Jensen",
        **fields,
    }
    response = await p.command.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["contact_id"])


async def change(p: Pipeline, contact_id: str, **fields: Any) -> None:
    response = await p.command.patch(f"/contacts/{contact_id}", json=fields)
    assert response.status_code == 200, response.text


async def tab(p: Pipeline, contact_id: str) -> list[str]:
    response = await p.query.get(f"/contacts/{contact_id}/activities")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"])
    return [a["message_id"] for a in body["items"]]


async def send(p: Pipeline, message: bytes) -> None:
    await p.produce(p.settings.activities_topic, message)


async def test_handover_of_indkob_keeps_mail_with_a_until_then_and_with_b_after(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        firma = str(uuid4())
        before_anyone = datetime.now(UTC) - timedelta(days=2)
        a = await create(p, firma, "Anne", work_email="indkob@firma.dk")
        b = await create(p, firma, "Bo", work_email="bo@firma.dk")
        with_a = await moment()
        await change(p, a, work_email="anne@firma.dk")
        unowned = await moment()
        await change(p, b, work_email="Indkob@Firma.dk")
        with_b = await moment()
        # The e-mails reach the worker before the contact events that decide their owner.
        supplier = "lev@supplier.example"
        await send(p, email("<early@x>", supplier, ["indkob@firma.dk"], sent=before_anyone))
        await send(p, email("<a@x>", "indkob@firma.dk", [supplier], sent=with_a))
        await send(p, email("<gap@x>", supplier, ["indkob@firma.dk"], sent=unowned))
        await send(p, email("<b@x>", supplier, ["INDKOB@firma.dk"], sent=with_b))
        await p.settle()

        # Sent before anyone held it: A's, the first to take it. Sent while nobody held it:
        # B's, the next to take it.
        assert await tab(p, a) == ["<a@x>", "<early@x>"]
        assert await tab(p, b) == ["<b@x>", "<gap@x>"]

        # A re-delivered e-mail changes nothing; a rebuild from the store derives the same
        # intervals, so both tabs read the same afterwards.
        await send(p, email("<b@x>", supplier, ["INDKOB@firma.dk"], sent=with_b))
        await p.settle()
        async with p.pool.acquire() as conn:
            live = await contacts_sql.dump(conn, contacts_sql.LIVE)
        assert p.contacts is not None
        await rebuild_contacts(p.settings, p.pool, StoreReader(p.contacts))
        async with p.pool.acquire() as conn:
            assert await contacts_sql.dump(conn, contacts_sql.LIVE) == live
        assert await tab(p, a) == ["<a@x>", "<early@x>"]
        assert await tab(p, b) == ["<b@x>", "<gap@x>"]


async def test_display_name_forms_mixed_case_and_several_recipients_are_matched(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        firma = str(uuid4())
        karen = await create(p, firma, "Karen", work_email="karen@acme.example")
        ole = await create(p, firma, "Ole", private_email="ole@home.example")
        sent = await moment()
        other = ["x@y.example"]
        await send(p, email("<m1@x>", "Karen Jensen <Karen@Acme.example>", other, sent=sent))
        await send(p, email("<m2@x>", '"Karen" <karen@acme.example>', other, sent=sent))
        await send(
            p,
            email(
                "<m3@x>",
                "x@y.example",
                ['"Hansen, Ole" <OLE@home.example>, Karen Jensen <karen@acme.example>'],
                ["Someone <someone@else.example>"],
                sent=sent,
            ),
        )
        # Odd values: the e-mail is kept and shown, and matches nobody; nothing dead-letters.
        await send(p, email("<m4@x>", "Karen Jensen karen@acme.example", ["<>"], sent=sent))
        await p.settle()

        assert await tab(p, karen) == ["<m1@x>", "<m2@x>", "<m3@x>"]
        assert await tab(p, ole) == ["<m3@x>"]
        shown = (await p.query.get(f"/contacts/{ole}/activities")).json()["items"][0]
        assert (shown["from_address"], shown["to"], shown["cc"]) == (
            "x@y.example",
            ["ole@home.example", "karen@acme.example"],
            ["someone@else.example"],
        )
        async with p.pool.acquire() as conn:
            kept = await conn.fetchrow(
                "SELECT from_address, to_addresses FROM ledger.emails WHERE message_id = $1",
                "<m4@x>",
            )
        assert kept is not None and tuple(kept) == ("karen jensen karen@acme.example", ["<>"])
        assert p.worker is not None and p.worker.stats.dead_lettered == 0


async def test_a_job_change_hands_the_carried_address_to_the_new_version(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        old = await create(
            p, str(uuid4()), "Karen", work_email="kj@acme.example", private_email="k@home.example"
        )
        at_acme = await moment()
        moved = await p.command.post(
            f"/contacts/{old}/job-changes",
            json={
                "company_id": str(uuid4()),
                "company_name": "Beta ApS",
                "work_email": "kj@beta.example",
                "effective_on": "2026-11-15",
            },
        )
        assert moved.status_code == 201, moved.text
        new = moved.json()["contact_id"]
        at_beta = await moment()
        await send(p, email("<p1@x>", "x@y.example", ["k@home.example"], sent=at_acme))
        await send(p, email("<w1@x>", "x@y.example", ["kj@acme.example"], sent=at_acme))
        await send(p, email("<p2@x>", "x@y.example", ["k@home.example"], sent=at_beta))
        # The former employment's work address is nobody's now: the next holder gets this.
        await send(p, email("<w2@x>", "x@y.example", ["kj@acme.example"], sent=at_beta))
        await p.settle()

        assert await tab(p, old) == ["<p1@x>", "<w1@x>"]
        assert await tab(p, new) == ["<p2@x>"]
        successor = await create(p, str(uuid4()), "Lise", work_email="kj@acme.example")
        await p.settle()
        assert await tab(p, successor) == ["<w2@x>"]
