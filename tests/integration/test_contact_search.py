"""Searching contacts on the query API: Danish names, e-mail, phone, free text, through the
whole pipeline on the real servers."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

import asyncpg

from services.projections.sql import contacts as contacts_sql
from shared.contract.infotags import tag_id_for_path
from shared.migrations import migrate_async
from shared.settings import KontaktSettings
from tests.pipeline import Pipeline, pipeline

ACME = str(uuid4())


async def create(p: Pipeline, first: str, last: str, **fields: Any) -> str:
    body = {
        "company_id": ACME,
        "company_name": "Acme A/S",
        "first_names": first,
        "last_names": last,
        **fields,
    }
    response = await p.command.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["contact_id"])


async def found(p: Pipeline, **params: Any) -> set[str]:
    response = await p.query.get("/contacts", params=params)
    assert response.status_code == 200, response.text
    return {c["contact_id"] for c in response.json()["items"]}


DANISH_CASES = [
    ("Jorgen", "jorgen"),
    ("Joergen", "jorgen"),
    ("Jørgen", "joergen"),
    ("Osterg", "ostergaard"),
    ("Aase", "aase"),
    ("Ase", "aase"),
    ("Aerling", "aerling"),
    ("Ærling", "erling_ae"),
]


async def test_name_search_folds_danish_letters_and_their_spellings(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        ids = {
            "jorgen": await create(p, "Jørgen", "Hansen"),
            "joergen": await create(p, "Joergen", "Madsen"),
            "ostergaard": await create(p, "Lis", "Østergaard"),
            "aase": await create(p, "Åse", "Berg"),
            "aerling": await create(p, "Ærling", "Holm"),
            "erling_ae": await create(p, "Aerling", "Dahl"),
            "other": await create(p, "Jens", "Olsen"),
        }
        await p.settle()
        for query, expected in DANISH_CASES:
            assert ids[expected] in await found(p, name=query), query
        assert await found(p, name="Jorgen") == {ids["jorgen"], ids["joergen"]}
        assert ids["other"] not in await found(p, name="Jørgen")


async def test_email_search_finds_current_and_earlier_addresses(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        karen = await create(p, "Karen", "Jensen", work_email="karen@acme.example")
        ole = await create(p, "Ole", "Hansen", work_email="ole@acme.example")
        changed = await p.command.patch(
            f"/contacts/{karen}", json={"work_email": "kj@beta.example"}
        )
        assert changed.status_code == 200, changed.text
        await p.settle()
        assert await found(p, email="KJ@beta.example") == {karen}
        assert await found(p, email="karen@acme.example") == {karen}  # an earlier address
        assert await found(p, email="ole@") == {ole}  # the beginning of an address
        assert await found(p, email="nobody@acme.example") == set()
        assert await found(p, email="karen@acme.example", name="Ole") == set()


async def test_phone_search_compares_digits_with_or_without_country_code(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        # One number shared by three people at one company: each says it is not the others.
        plain = await create(p, "Karen", "Jensen", work_phone="12345678")
        zeros = await create(
            p, "Ole", "Hansen", private_phone="004512345678", distinct_from=[plain]
        )
        plus = await create(
            p, "Lis", "Berg", work_phone="+45 12 34 56 78", distinct_from=[plain, zeros]
        )
        other = await create(p, "Bo", "Holm", work_phone="+45 87 65 43 21")
        await p.settle()
        everyone = {plain, zeros, plus}
        for query in ("+45 12 34 56 78", "12345678", "004512345678", "12 34 56 78"):
            assert await found(p, phone=query) == everyone, query
        assert await found(p, phone="87654321") == {other}
        assert await found(p, phone="+46 12 34 56 78") == {plain}
        assert await found(p, phone="1234") == set()
        assert await found(p, phone="+45 ()") == set()  # no digits: no number


async def test_free_text_searches_title_department_and_company_name(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        buyer = await create(p, "Karen", "Jensen", job_title="Indkøbschef")
        finance = await create(p, "Ole", "Hansen", department="Økonomi")
        beta_body = {
            "company_id": str(uuid4()),
            "company_name": "Bøgh & Søn ApS",
            "first_names": "Lis",
            "last_names": "Berg",
        }
        beta = (await p.command.post("/contacts", json=beta_body)).json()["contact_id"]
        await p.settle()
        assert await found(p, q="indkobs") == {buyer}
        assert await found(p, q="OEKONOMI") == {finance}
        assert await found(p, q="boegh & son") == {beta}
        assert await found(p, q="acme") == {buyer, finance}
        assert await found(p, q="acme", company_id=ACME, name="Ole") == {finance}


async def test_an_unknown_or_unfit_query_parameter_is_422_naming_it(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        cid = await create(p, "Karen", "Jensen")
        await p.settle()
        for path, params in [
            ("/contacts", {"e_mail": "karen@acme.example"}),
            (f"/contacts/{cid}", {"verbose": "1"}),
            (f"/contacts/{cid}/activities", {"since": "2026-01-01"}),
        ]:
            response = await p.query.get(path, params=params)
            assert response.status_code == 422, response.text
            name = next(iter(params))
            assert [e["field"] for e in response.json()["errors"]] == [f"query.{name}"]
        response = await p.command.get(f"/contacts/{cid}", params={"fields": "all"})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "query.fields"
        for params in [{"phone": "1\x002"}, {"email": ""}, {"q": " "}]:
            response = await p.query.get("/contacts", params=params)
            assert response.status_code == 422, (params, response.text)
        assert (await p.query.get("/contacts", params={"min_version": "1"})).status_code == 422
        assert (await p.query.get("/contacts", params={"limit": "5"})).status_code == 200


#: Enough contacts for the planner to prefer an index to the status index, made by SQL.
_MANY = """
INSERT INTO rm.contacts (contact_id, person_id, version, position, status, company_id,
    company_name, first_names, last_names, search_text, free_text, job_title, work_phone,
    phone_digits, phone_tails, archived, erased, outlook_sync_users)
SELECT gen_random_uuid(), gen_random_uuid(), 1, i, 'current', gen_random_uuid(),
    'firma ' || i, 'navn' || i, 'efternavn' || i, 'navn' || i || ' efternavn' || i,
    'titel' || i || ' firma ' || i, 'titel' || i, (10000000 + i)::text,
    ARRAY[(4510000000 + i)::text], ARRAY[(10000000 + i)::text], false, false, '{}'
FROM generate_series(1, 100000) AS i;
INSERT INTO rm.contact_addresses (contact_id, person_id, address, valid_from)
SELECT contact_id, person_id, first_names || '@firma.example', now() FROM rm.contacts;
ANALYZE rm.contacts;
ANALYZE rm.contact_addresses;
"""

#: Each search, and the indexes that must serve it.
_SERVED_BY: list[tuple[dict[str, Any], list[str]]] = [
    ({"name": "efternavn1234"}, ["contacts_search_trgm"]),
    ({"text": "titel4242"}, ["contacts_free_text_trgm"]),
    ({"phone": "4510000077"}, ["contacts_phone_digits", "contacts_phone_tails"]),
    ({"email": "navn77@firma"}, ["contact_addresses_address_prefix"]),
]


async def test_each_search_is_served_by_its_index(isolated_settings: KontaktSettings) -> None:
    await migrate_async(isolated_settings.pg_dsn())
    conn = await asyncpg.connect(isolated_settings.pg_dsn())
    try:
        await conn.execute(_MANY)
        await conn.execute("SET enable_seqscan = off")
        for search, indexes in _SERVED_BY:
            clause, args = contacts_sql.filters(**search)
            sql = f"EXPLAIN SELECT * FROM rm.contacts c WHERE {clause}"
            plan = "\n".join(r[0] for r in await conn.fetch(sql, *args))
            for index in indexes:
                # A bitmap scan names the index "on", a plain index scan "using" it.
                assert re.search(rf"Index Scan (on|using) {index}\b", plan), (search, plan)
    finally:
        await conn.close()


async def test_infotag_search_finds_the_tag_and_the_tags_below_it(
    isolated_settings: KontaktSettings, token_for: Any
) -> None:
    admin = {"Authorization": f"Bearer {token_for('root', ['admin'])}"}
    async with pipeline(isolated_settings) as p:
        kunde = (await p.command.post("/infotags", json={"name": "Kunde"}, headers=admin)).json()
        placed: dict[str, str] = {}
        children: dict[str, str] = {}
        for name in ("Guld", "Sølv"):
            body = {"name": name, "parent_id": kunde["tag_id"]}
            child = (await p.command.post("/infotags", json=body, headers=admin)).json()
            children[name] = child["tag_id"]
            placed[name] = await create(p, "Kunde", name)
            await p.command.post(
                f"/contacts/{placed[name]}/infotags", json={"tag_id": child["tag_id"]}
            )
        placed["Kunde"] = await create(p, "Kunde", "Selv")
        await p.command.post(f"/contacts/{placed['Kunde']}/infotags", json={"tag": "Kunde"})
        lookalike = await create(p, "Kunde", "Lookalike")
        await p.command.post(f"/contacts/{lookalike}/infotags", json={"tag": "Kundeservice"})
        await p.settle()
        assert await found(p, infotag="Kunde") == set(placed.values())
        assert await found(p, infotag="Kunde/Guld") == {placed["Guld"]}
        assert await found(p, infotag="Kunde_") == set()  # no LIKE wildcard
        assert await found(p, infotag=children["Sølv"]) == {placed["Sølv"]}
        # The Infotags tab names the catalogue tag (null for a placement by name).
        tab = (await p.query.get(f"/contacts/{placed['Guld']}/infotags")).json()
        assert [(t["tag"], t["tag_id"]) for t in tab] == [("Kunde/Guld", children["Guld"])]
        tab = (await p.query.get(f"/contacts/{lookalike}/infotags")).json()
        # A name the catalogue does not know: the tag it would be carried over to.
        assert [(t["tag"], t["tag_id"]) for t in tab] == [
            ("Kundeservice", str(tag_id_for_path("Kundeservice")))
        ]
