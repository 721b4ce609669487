"""Looking companies up by name on the query API (the job change's company field), through
the whole pipeline on the real servers."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from shared.settings import KontaktSettings
from tests.pipeline import Pipeline, pipeline


async def create(p: Pipeline, company_id: str, company_name: str, last: str) -> str:
    body = {"company_id": company_id, "company_name": company_name,
            "first_names": "Karen", "last_names": last}  # fmt: skip
    response = await p.command.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["contact_id"])


async def companies(p: Pipeline, **params: Any) -> list[tuple[str, str, int]]:
    response = await p.query.get("/companies", params=params)
    assert response.status_code == 200, response.text
    return [(c["company_id"], c["company_name"], c["contacts"]) for c in response.json()]


async def test_companies_are_found_by_the_beginning_of_their_name_or_a_word_once_each(
    isolated_settings: KontaktSettings,
) -> None:
    acme, bogh, nordlys = str(uuid4()), str(uuid4()), str(uuid4())
    async with pipeline(isolated_settings) as p:
        await create(p, acme, "Acme A/S", "Jensen")
        await create(p, acme, "Acme A/S", "Hansen")
        archived = await create(p, acme, "Acme A/S", "Berg")
        answer = await p.command.post(f"/contacts/{archived}/archive")
        assert answer.status_code == 200, answer.text
        await create(p, bogh, "Bøgh & Søn ApS", "Holm")
        await create(p, nordlys, "Nordlys 100%_ A/S", "Dahl")
        await p.settle()
        assert await companies(p, q="acm") == [(acme, "Acme A/S", 2)]
        assert await companies(p, q="SØN") == [(bogh, "Bøgh & Søn ApS", 1)]
        assert await companies(p, q="bøgh & s") == [(bogh, "Bøgh & Søn ApS", 1)]
        assert [c[1] for c in await companies(p, q="A/S")] == ["Acme A/S", "Nordlys 100%_ A/S"]
        assert await companies(p, q="A/S", limit=1) == [(acme, "Acme A/S", 2)]
        # LIKE's wildcards are characters to look for.
        assert await companies(p, q="%") == []
        assert await companies(p, q="100%_") == [(nordlys, "Nordlys 100%_ A/S", 1)]
        assert await companies(p, q="Zebra") == []


async def test_a_company_lookup_without_a_usable_name_or_limit_is_refused_with_422(
    isolated_settings: KontaktSettings,
) -> None:
    async with pipeline(isolated_settings) as p:
        for params in [{}, {"q": ""}, {"q": "  "}, {"q": "a\x00b"}, {"q": "x" * 201},
                       {"q": "a", "limit": "0"}, {"q": "a", "limit": "51"},
                       {"q": "a", "limit": "1e999"}, {"q": "a", "nope": "1"}]:  # fmt: skip
            response = await p.query.get("/companies", params=params)
            assert response.status_code == 422, (params, response.text)
            assert isinstance(response.json()["detail"], str)
        assert (await p.query.get("/companies", params={"q": "a"}, headers={
            "Authorization": "Bearer nope"})).status_code == 401  # fmt: skip
