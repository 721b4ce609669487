"""The web UI in a real browser (Debian's chromium) on the real servers: both APIs, the
projection worker and a relay in process, the web app on a port of its own."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright, expect

from services.contacts.relay import Relay
from services.web.app import TABS, create_web_app
from shared.auth import mint_token
from shared.settings import KontaktSettings
from tests.images import image_bytes
from tests.pipeline import Pipeline, Server
from tests.support import (
    env_of,
    eventually,
    free_port,
    isolated,
    start_kontakt,
    stop_process,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "ui"
CHROMIUM = "/usr/bin/chromium"
PHOTO_LIMIT = 64 * 1024
#: The user whose Outlook mailbox the Graph-compatible server has (the default mapping:
#: the CRM user id is the mailbox).
MAILBOX = "mette"
#: The WCAG 2.1 A and AA rules of axe.
WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


@dataclass
class Site:
    """The running web UI, its browser, and a catalogue infotag to place."""

    url: str
    browser: Browser
    tag_path: str
    settings: KontaktSettings
    pipeline: Pipeline
    #: The Graph-compatible server the sync worker keeps each user's Outlook on.
    graph_url: str


def start_outlook_sync(s: KontaktSettings, logs: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """The Graph-compatible server (MAILBOX provisioned) and `kontakt sync worker` on `s`."""
    graph_port = free_port()
    graph_url = f"http://127.0.0.1:{graph_port}"
    env = env_of(
        s,
        KONTAKT_SYNC_GRAPH_BASE_URL=f"{graph_url}/v1.0",
        KONTAKT_SYNC_GRAPH_AUTHORITY=graph_url,
        KONTAKT_SYNC_GRAPH_CLIENT_ID="kontakt-web-tests",
        KONTAKT_SYNC_GRAPH_CLIENT_SECRET="s3cret",
        KONTAKT_SYNC_CONSUMER_GROUP=f"web-sync-{uuid4().hex[:8]}",
        KONTAKT_SYNC_POLL_SECONDS="0.2",
        # As in production: only users mapped to a mailbox are synced.
        KONTAKT_SYNC_MAILBOXES=json.dumps({MAILBOX: MAILBOX}),
    )
    env.pop("KONTAKT_SYNC_SERVICE_TOKEN", None)
    graph = start_kontakt(
        ["graph-server", "--port", str(graph_port), "--client-secret", "s3cret",
         "--mailboxes", MAILBOX],
        env,
        logs / "graph.log",
    )  # fmt: skip
    wait_ready(f"{graph_url}/_admin/stats", graph, log=logs / "graph.log")
    worker = start_kontakt(["sync", "worker"], env, logs / "worker.log")
    return graph_url, [worker, graph]


@pytest.fixture(scope="module")
async def site(
    settings: KontaktSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    """Every server, a relay and the Outlook sync worker running, the web app, and chromium."""
    with isolated(settings) as own:
        # A small photo limit, so a test can go over it.
        own = own.model_copy(update={"photo_max_bytes": PHOTO_LIMIT})
        p = await Pipeline(own).start()
        assert p.contacts is not None
        stop = asyncio.Event()
        relay = asyncio.create_task(Relay(p.settings, p.contacts).run(stop))
        s = p.settings.model_copy(
            update={
                "web_port": free_port(),
                "query_api_url": f"http://127.0.0.1:{p.settings.query_port}",
            }
        )
        web = Server(create_web_app(s), s.web_port)
        await web.start()
        graph_url, processes = start_outlook_sync(s, tmp_path_factory.mktemp("web-sync"))
        admin = mint_token(s, "admin", ["admin"])
        tag = f"Kunde{uuid4().hex[:6]}"
        async with httpx.AsyncClient(base_url=s.contacts_api_url) as client:
            defined = await client.post(
                "/infotags", json={"name": tag}, headers={"Authorization": f"Bearer {admin}"}
            )
            assert defined.status_code == 201, defined.text
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
                )
                yield Site(f"http://127.0.0.1:{s.web_port}", browser, tag, s, p, graph_url)
                await browser.close()
        finally:
            for proc in processes:
                stop_process(proc, timeout=30)
            await web.stop()
            stop.set()
            await relay
            await p.stop()


async def signed_in(
    site: Site, user: str = "mette", locale: str = "da-DK", admin: bool = False
) -> Page:
    """A new browser page, signed in through the sign-in form (as an admin when asked)."""
    context = await site.browser.new_context(locale=locale, viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    await page.goto(f"{site.url}/contacts")
    await expect(page).to_have_url(re.compile(r"/sign-in$"))
    await page.fill("#user", user)
    if admin:
        await page.check("#admin")
    await page.click("form[action='/sign-in'] button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/contacts$"))
    return page


async def create(page: Page, site: Site, first: str, last: str, email: str | None = None) -> str:
    """Create a contact through the form; its page's URL."""
    await page.goto(f"{site.url}/contacts/new")
    await page.fill("#n-company_name", "Nordlys A/S")
    await page.fill("#n-first_names", first)
    await page.fill("#n-last_names", last)
    await page.fill("#n-job_title", "Indkøber")
    await page.fill("#n-work_email", email or f"{uuid4().hex[:10]}@nordlys.dk")
    await page.click("form[action='/contacts/new'] button[type=submit]")
    await expect(page.locator("h1")).to_have_text(f"{first} {last}")
    return page.url


def _event(type_: str, **fields: object) -> bytes:
    at = datetime(2026, 11, 1, 9, 30, tzinfo=UTC).isoformat()
    return json.dumps(
        {"event_id": str(uuid4()), "type": type_, "occurred_at": at, **fields}
    ).encode()


async def other_services_events(site: Site, page: Page, email: str) -> None:
    """An opportunity, a campaign and a project linking the page's contact, and an e-mail
    from it, as the other services publish them; back on the page once all are read."""
    contact_id = page.url.split("?")[0].rsplit("/", 1)[-1]
    p, s = site.pipeline, site.settings
    for topic, title, status, role in [
        (s.opportunities_topic, "Stort salg", "open", "beslutningstager"),
        (s.campaigns_topic, "Jul 2026", "running", None),
        (s.projects_topic, "Nyt lager", "planned", "kontaktperson"),
    ]:
        item = str(uuid4())
        created = _event("Created", item_id=item, title=title, status=status)
        linked = _event("ContactLinked", item_id=item, contact_id=contact_id, role=role)
        await p.produce(topic, created, key=item.encode())
        await p.produce(topic, linked, key=item.encode())
    sent = datetime.now(UTC).isoformat()  # while the contact holds the address
    mail = _event("EmailLogged", message_id=f"<{uuid4()}@x>", from_address=email,
                  to=["salg@kontakt.example"], cc=[], subject="Tilbud", sent_at=sent)  # fmt: skip
    await p.produce(s.activities_topic, mail)
    auth = {"Authorization": f"Bearer {mint_token(s, 'mette')}"}
    async with httpx.AsyncClient(base_url=s.query_api_url, headers=auth) as q:

        async def arrived() -> bool:
            tabs = ["opportunities", "campaigns", "projects", "activities"]
            pages = [(await q.get(f"/contacts/{contact_id}/{t}")).json() for t in tabs]
            return all(page["total"] == 1 for page in pages)

        await eventually(arrived, "the other services' events on the contact's tabs")
    await page.reload()


async def tab(page: Page, key: str) -> None:
    """Select a tab by clicking it."""
    await page.click(f"#tab-{key}")
    await expect(page.locator(f"#panel-{key}")).to_be_visible()


async def test_signing_in_creating_and_editing_a_field(site: Site) -> None:
    page = await signed_in(site)
    await create(page, site, "Karen", "Jensen")
    await page.fill("#d-job_title", "Indkøbschef")
    await page.click("#details-form button[type=submit]")
    await expect(page.locator(".notice")).to_have_text("Gemt.")
    await expect(page.locator(".contact-header")).to_contain_text("Indkøbschef, Nordlys A/S")
    await expect(page.locator("#d-job_title")).to_have_value("Indkøbschef")


async def test_an_invalid_field_shows_the_apis_message(site: Site) -> None:
    page = await signed_in(site)
    await create(page, site, "Ole", "Hansen")
    await page.fill("#d-work_phone", "not a phone")
    await page.click("#details-form button[type=submit]")
    await expect(page.locator("#d-work_phone")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#d-work_phone-error")).to_contain_text("phone number")


async def test_saving_over_someone_elses_change_is_refused_with_the_apis_message(
    site: Site,
) -> None:
    page = await signed_in(site)
    url = await create(page, site, "Eva", "Rask")
    other = await signed_in(site, "jonas")
    await other.goto(url)
    await other.fill("#d-department", "Salg")
    await other.click("#details-form button[type=submit]")
    await expect(other.locator(".notice")).to_have_text("Gemt.")
    await page.fill("#d-department", "Indkøb")  # on the page shown before jonas saved
    await page.click("#details-form button[type=submit]")
    await expect(page.locator(".problem")).to_contain_text("version")
    await expect(page.locator("#d-department")).to_have_value("Indkøb")


async def test_other_services_items_and_emails_show_on_their_tabs(site: Site) -> None:
    page = await signed_in(site)
    email = f"{uuid4().hex[:10]}@nordlys.dk"
    await create(page, site, "Hanne", "Ravn", email)
    await other_services_events(site, page, email)
    await expect(page.locator("#panel-details table")).to_contain_text("Tilbud")
    for key, title, status, role in [
        ("opportunities", "Stort salg", "open", "beslutningstager"),
        ("campaigns", "Jul 2026", "running", ""),
        ("projects", "Nyt lager", "planned", "kontaktperson"),
    ]:
        await tab(page, key)
        cells = page.locator(f"#panel-{key} tbody tr td")
        await expect(cells).to_have_text([title, status, role])


async def test_placing_and_removing_an_infotag(site: Site) -> None:
    page = await signed_in(site)
    await create(page, site, "Anne", "Berg")
    await tab(page, "infotags")
    await page.select_option("#tag-choice", label=site.tag_path)
    await page.click("form[action$='/infotags'] button[type=submit]")
    row = page.locator("#panel-infotags table.tags tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text(site.tag_path)
    await expect(row).to_contain_text("mette")
    await row.get_by_role("button").click()
    await expect(page.locator("#panel-infotags")).to_contain_text("Ingen infotags.")


async def test_uploading_a_photo_and_refusing_a_non_image_or_one_too_large(
    site: Site, tmp_path: Path
) -> None:
    page = await signed_in(site)
    await create(page, site, "Lars", "Holm")
    await tab(page, "photo")
    text = tmp_path / "note.png"
    text.write_bytes(b"this is no image")
    await page.set_input_files("#photo-file", str(text))
    await page.click("form[enctype] button[type=submit]")
    await expect(page.locator(".problem")).to_be_visible()
    await expect(page.locator(".problem")).to_contain_text("JPEG, PNG or WebP")
    large = tmp_path / "large.png"
    large.write_bytes(image_bytes("PNG", (40, 40)) + b"\0" * PHOTO_LIMIT)
    await page.set_input_files("#photo-file", str(large))
    await page.click("form[enctype] button[type=submit]")
    await expect(page.locator(".problem")).to_contain_text(f"{PHOTO_LIMIT} bytes")
    picture = tmp_path / "face.png"
    picture.write_bytes(image_bytes("PNG", (40, 40), "teal"))
    await page.set_input_files("#photo-file", str(picture))
    await page.click("form[enctype] button[type=submit]")
    image = page.locator("#panel-photo img.photo")
    await expect(image).to_be_visible()
    assert await image.evaluate("i => i.naturalWidth") == 40
    await expect(page.locator(".contact-header img.portrait")).to_be_visible()
    await page.click("form[action$='/photo/remove'] button")
    await expect(page.locator("#panel-photo")).to_contain_text("Intet foto.")


async def drop_file(page: Page, selector: str, data: bytes, name: str, media_type: str) -> None:
    """Drop a file with these bytes on the element, as dragging it from the desktop does."""
    await page.evaluate(
        """([selector, encoded, name, type]) => {
            const bytes = Uint8Array.from(atob(encoded), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type}));
            const zone = document.querySelector(selector);
            for (const kind of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(kind, {
                    dataTransfer: transfer, bubbles: true, cancelable: true}));
            }
        }""",
        [selector, base64.b64encode(data).decode(), name, media_type],
    )


async def test_a_photo_dropped_on_the_drop_zone_is_uploaded_and_a_bad_one_refused(
    site: Site,
) -> None:
    page = await signed_in(site)
    await create(page, site, "Laura", "Dahl")
    await tab(page, "photo")
    zone = "#panel-photo [data-drop-zone]"
    await expect(page.locator(zone)).to_contain_text("Træk et billede hertil")
    await drop_file(page, zone, b"this is no image", "note.png", "image/png")
    await expect(page.locator(".problem")).to_contain_text("JPEG, PNG or WebP")
    large = image_bytes("PNG", (40, 40)) + b"\0" * PHOTO_LIMIT
    await drop_file(page, zone, large, "large.png", "image/png")
    await expect(page.locator(".problem")).to_contain_text(f"{PHOTO_LIMIT} bytes")
    picture = image_bytes("PNG", (44, 33), "teal")
    await drop_file(page, zone, picture, "face.png", "image/png")
    await expect(page.locator(".notice")).to_have_text("Gemt.")
    image = page.locator("#panel-photo img.photo")
    await expect(image).to_be_visible()
    assert await image.evaluate("i => i.naturalWidth") == 44
    await expect(page.locator(".contact-header img.portrait")).to_be_visible()


async def outlook_items(site: Site, user: str) -> list[dict[str, object]]:
    """The contacts in the user's Outlook, as the Graph-compatible server holds them."""
    async with httpx.AsyncClient(base_url=site.graph_url) as graph:
        answer = await graph.get(f"/_admin/users/{user}/contacts")
        answer.raise_for_status()
        items: list[dict[str, object]] = answer.json()["value"]
        return items


async def test_switching_outlook_sync_on_and_off(site: Site) -> None:
    page = await signed_in(site, MAILBOX)
    last = f"Lund{uuid4().hex[:6]}"
    await create(page, site, "Sofie", last)
    await page.get_by_role("button", name="Tænd Outlook Sync").click()
    await expect(page.locator(".sync-status")).to_contain_text("Din synkronisering:")

    async def arrived() -> bool:
        return any(item.get("surname") == last for item in await outlook_items(site, MAILBOX))

    await eventually(arrived, f"{last} in {MAILBOX}'s Outlook")

    async def shown_in_outlook() -> bool:
        await page.reload()
        return "i Outlook" in (await page.locator(".sync-status").inner_text())

    await eventually(shown_in_outlook, "the sync worker's status on the Details tab")
    await page.get_by_role("button", name="Sluk Outlook Sync").click()
    await expect(page.locator(".sync-status")).to_have_text("Du synkroniserer ikke denne kontakt.")

    async def gone() -> bool:
        return all(item.get("surname") != last for item in await outlook_items(site, MAILBOX))

    await eventually(gone, f"{last} gone from {MAILBOX}'s Outlook")


async def test_search_finds_jorgen_spelt_without_the_o_slash(site: Site) -> None:
    page = await signed_in(site)
    last = f"Mø{uuid4().hex[:6]}"
    await create(page, site, "Jørgen", last)
    await page.goto(f"{site.url}/contacts")
    await page.fill("#s-name", "Jorgen")
    await page.fill("#s-q", "Nordlys")
    await page.click("form.search button[type=submit]")
    await expect(page.get_by_role("link", name=f"Jørgen {last}")).to_be_visible()


async def test_a_look_alike_is_shown_and_can_be_created_as_another_person(site: Site) -> None:
    page = await signed_in(site)
    last = f"Lyng{uuid4().hex[:6]}"
    existing = await create(page, site, "Søren", last)
    await page.goto(f"{site.url}/contacts/new")
    await page.fill("#n-company_name", "Nordlys A/S")
    await page.fill("#n-company_id", await company_of(site, existing))
    await page.fill("#n-first_names", "Soeren")  # the same name, folded
    await page.fill("#n-last_names", last)
    await page.click("form[action='/contacts/new'] button[type=submit]")
    await expect(page.get_by_role("link", name=f"Søren {last}")).to_be_visible()
    await page.get_by_role("button", name="Opret alligevel: det er en anden person").click()
    await expect(page.locator("h1")).to_have_text(f"Soeren {last}")
    assert page.url.split("?")[0] != existing.split("?")[0]


async def company_of(site: Site, contact_url: str) -> str:
    """The company id of a contact, as the query API has it."""
    contact_id = contact_url.split("?")[0].rsplit("/", 1)[-1]
    auth = {"Authorization": f"Bearer {mint_token(site.settings, 'mette')}"}
    async with httpx.AsyncClient(base_url=site.settings.query_api_url, headers=auth) as q:
        company: str = (await q.get(f"/contacts/{contact_id}")).json()["company_id"]
    return company


async def test_search_results_come_a_page_at_a_time(site: Site) -> None:
    last = f"Paging{uuid4().hex[:6]}"
    auth = {"Authorization": f"Bearer {mint_token(site.settings, 'mette')}"}
    company = str(uuid4())
    async with httpx.AsyncClient(base_url=site.settings.contacts_api_url, headers=auth) as api:
        for n in range(23):
            body = {"company_id": company, "company_name": "Nordlys A/S",
                    "first_names": f"Person{n:02}", "last_names": last}  # fmt: skip
            assert (await api.post("/contacts", json=body)).status_code == 201
    query = httpx.AsyncClient(base_url=site.settings.query_api_url, headers=auth)
    async with query:

        async def projected() -> bool:
            found = (await query.get("/contacts", params={"name": last})).json()
            return bool(found["total"] == 23)

        await eventually(projected, "the 23 contacts in the read model")
    page = await signed_in(site)
    await page.fill("#s-name", last)
    await page.click("form.search button[type=submit]")
    await expect(page.locator("#results")).to_contain_text("Viser 1-20 af 23")
    await expect(page.locator("#results tbody tr")).to_have_count(20)
    await expect(page).to_have_url(re.compile(f"name={last}"))
    await page.get_by_role("link", name="Næste").click()
    await expect(page.locator("#results")).to_contain_text("Viser 21-23 af 23")
    await expect(page.locator("#results tbody tr")).to_have_count(3)
    await page.get_by_role("link", name="Forrige").click()
    await expect(page.locator("#results")).to_contain_text("Viser 1-20 af 23")


async def test_a_duplicate_create_links_to_the_existing_contact(site: Site) -> None:
    page = await signed_in(site)
    email = f"{uuid4().hex[:10]}@nordlys.dk"
    first = await create(page, site, "Peter", "Dam", email)
    await page.goto(f"{site.url}/contacts/new")
    await page.fill("#n-company_name", "Nordlys A/S")
    await page.fill("#n-first_names", "Pia")
    await page.fill("#n-last_names", "Skov")
    await page.fill("#n-work_email", email)
    await page.click("form[action='/contacts/new'] button[type=submit]")
    await page.get_by_role("link", name="Vis den eksisterende kontakt").click()
    await expect(page.locator("h1")).to_have_text("Peter Dam")
    assert page.url.split("?")[0] == first.split("?")[0]


async def test_the_language_switch_overrides_the_browsers_language(site: Site) -> None:
    page = await signed_in(site, locale="da-DK")
    await create(page, site, "Maja", "Friis")
    await expect(page.locator("#tab-employments")).to_have_text("Ansættelser")
    await page.get_by_role("button", name="English").click()
    await expect(page.locator("#tab-employments")).to_have_text("Employments")
    await expect(page.locator("h1")).to_have_text("Maja Friis")
    assert await page.locator("html").get_attribute("lang") == "en"
    await page.goto(f"{site.url}/contacts")
    await expect(page.locator("h1")).to_have_text("Contacts")


async def test_a_job_change_and_the_former_versions_link_to_the_current(site: Site) -> None:
    page = await signed_in(site)
    former = await create(page, site, "Niels", "Kjær")
    await tab(page, "employments")
    await page.fill("#j-company_name", "Havbro ApS")
    await page.fill("#j-job_title", "CFO")
    await page.click("form[action$='/job-change'] button[type=submit]")
    await expect(page.locator(".contact-header")).to_contain_text("CFO, Havbro ApS")
    rows = page.locator("#panel-employments table tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("Tidligere")
    await expect(rows.nth(1)).to_contain_text("Aktuel")
    current = page.url.split("?")[0]
    await page.goto(former)
    await expect(page.locator(".contact-header")).to_contain_text("Tidligere")
    await page.get_by_role("link", name="Gå til den aktuelle version").click()
    assert page.url.split("?")[0] == current


async def test_a_job_change_to_a_company_picked_by_part_of_its_name(site: Site) -> None:
    page = await signed_in(site)
    company = f"Solbakken{uuid4().hex[:6]} ApS"
    colleague = await create(page, site, "Otto", "Lund")
    contact_id = colleague.split("?")[0].rsplit("/", 1)[-1]
    auth = {"Authorization": f"Bearer {mint_token(site.settings, 'mette')}"}
    async with httpx.AsyncClient(base_url=site.settings.contacts_api_url, headers=auth) as api:
        company_id = str(uuid4())
        change = {"company_id": company_id, "company_name": company}
        moved = await api.post(f"/contacts/{contact_id}/job-changes", json=change)
        assert moved.status_code == 201, moved.text
    await create(page, site, "Vera", "Moe")
    await tab(page, "employments")
    await page.locator("#j-company_name").press_sequentially(company[:12].lower())
    suggestion = page.locator(f"#j-companies option[data-company-id='{company_id}']")
    await expect(suggestion).to_have_attribute("value", company)
    await expect(suggestion).to_have_attribute("label", "1 aktuelle kontakter")
    # Picking a suggestion sets the field to its value, as choosing it in the list does.
    await page.fill("#j-company_name", company)
    await expect(page.locator("#j-company_id")).to_have_value(company_id)
    await page.fill("#j-job_title", "Lagerchef")
    await page.click("form[action$='/job-change'] button[type=submit]")
    await expect(page.locator(".contact-header")).to_contain_text(f"Lagerchef, {company}")
    rows = page.locator("#panel-employments table tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.filter(has_text=company)).to_contain_text("Aktuel")
    assert await company_of(site, page.url) == company_id
    await tab(page, "details")
    await expect(page.locator(".relations .colleagues")).to_contain_text("Otto Lund")


async def test_a_job_change_to_a_name_no_company_has_makes_a_new_company(site: Site) -> None:
    page = await signed_in(site)
    former = await create(page, site, "Tove", "Bruun")
    await tab(page, "employments")
    company = f"Nyfirma{uuid4().hex[:6]} ApS"
    await page.fill("#j-company_name", company)
    await expect(page.locator("#j-companies option")).to_have_count(0)
    await expect(page.locator("#j-company_id")).to_have_value("")
    await page.click("form[action$='/job-change'] button[type=submit]")
    await expect(page.locator(".contact-header")).to_contain_text(company)
    assert await company_of(site, page.url) != await company_of(site, former)


async def test_archiving_and_restoring(site: Site) -> None:
    page = await signed_in(site)
    await create(page, site, "Rasmus", "Vang")
    await page.get_by_role("button", name="Arkivér").click()
    await expect(page.locator(".contact-header .status")).to_have_text("Arkiveret")
    await page.get_by_role("button", name="Genskab").click()
    await expect(page.locator(".contact-header .status")).to_have_text("Aktuel")


@pytest.mark.parametrize("locale", ["da-DK", "en-GB"])
async def test_every_tab_has_no_wcag_violations(site: Site, locale: str, tmp_path: Path) -> None:
    page = await signed_in(site, locale=locale)
    await create(page, site, "Ida", "Krogh")
    assert await page.locator("html").get_attribute("lang") == locale[:2]
    # Every tab with something in it: a tag, a photo, the sync on, a former version.
    await tab(page, "infotags")
    await page.select_option("#tag-choice", label=site.tag_path)
    await page.click("form[action$='/infotags'] button[type=submit]")
    await tab(page, "photo")
    picture = tmp_path / "ida.png"
    picture.write_bytes(image_bytes("PNG", (96, 96), "teal"))
    await page.set_input_files("#photo-file", str(picture))
    await page.click("form[enctype] button[type=submit]")
    await expect(page.locator("#panel-photo img.photo")).to_be_visible()
    await tab(page, "details")
    await page.locator("form[action$='/outlook-sync'] button").click()
    await tab(page, "employments")
    # A company per run: the other run's Ida Krogh at the same company is a look-alike.
    await page.fill("#j-company_name", "Havbro ApS" if locale == "da-DK" else "Havbro Ltd")
    await page.fill("#j-job_title", "CFO")
    email = f"{uuid4().hex[:10]}@havbro.dk"
    await page.fill("#j-work_email", email)
    await page.click("form[action$='/job-change'] button[type=submit]")
    await expect(page.locator("#panel-employments tbody tr")).to_have_count(2)
    await other_services_events(site, page, email)
    axe = Axe()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for key, _ in TABS:
        await tab(page, key)
        results = await axe.run(page, options=WCAG)
        assert results.violations_count == 0, f"{key} ({locale}): {results.generate_report()}"
        if locale == "da-DK":
            await page.screenshot(path=str(SCREENSHOTS / f"{key}.png"), full_page=True)
    for path in ("/contacts", "/contacts?name=Ida", "/contacts/new"):
        await page.goto(f"{site.url}{path}")
        results = await axe.run(page, options=WCAG)
        assert results.violations_count == 0, f"{path}: {results.generate_report()}"
    await page.click("form[action='/sign-out'] button")
    await expect(page).to_have_url(re.compile(r"/sign-in$"))
    results = await axe.run(page, options=WCAG)
    assert results.violations_count == 0, f"sign-in: {results.generate_report()}"


async def tab_to(page: Page, selector: str, presses: int = 80) -> None:
    """Press Tab until the element matching the selector has the focus."""
    for _ in range(presses):
        if await page.evaluate("s => document.activeElement.matches(s)", selector):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"{selector} not reached in {presses} presses of Tab")


async def test_the_tabs_and_the_outlook_button_can_be_walked_with_the_keyboard_alone(
    site: Site,
) -> None:
    page = await signed_in(site)
    await create(page, site, "Emil", "Bach")
    await tab_to(page, "[role=tab]")
    focused = page.locator(":focus")
    await expect(focused).to_have_id("tab-details")
    for key, _ in TABS[1:]:
        await page.keyboard.press("ArrowRight")
        await expect(page.locator(":focus")).to_have_id(f"tab-{key}")
        await expect(page.locator(f"#tab-{key}")).to_have_attribute("aria-selected", "true")
        await expect(page.locator(f"#panel-{key}")).to_be_visible()
    await page.keyboard.press("ArrowRight")  # wraps to the first
    await expect(page.locator(":focus")).to_have_id("tab-details")
    await page.keyboard.press("End")
    await expect(page.locator(":focus")).to_have_id("tab-employments")
    await page.keyboard.press("Home")
    await expect(page.locator("#panel-details")).to_be_visible()
    await expect(page.locator("#panel-employments")).to_be_hidden()
    await page.keyboard.press("Tab")  # into the selected panel, not along the other tabs
    await expect(page.locator(":focus")).to_have_id("panel-details")
    # On through the Details form to the Outlook button: Enter switches the sync on...
    await tab_to(page, "#panel-details button.outlook")
    await expect(page.locator(":focus")).to_have_text("Tænd Outlook Sync")
    await page.keyboard.press("Enter")
    await expect(page.locator(".sync-status")).to_contain_text("Din synkronisering:")
    # ...and, reached again after the page came back, Space switches it off.
    await tab_to(page, "#panel-details button.outlook")
    await expect(page.locator(":focus")).to_have_text("Sluk Outlook Sync")
    await page.keyboard.press("Space")
    await expect(page.locator(".sync-status")).to_have_text("Du synkroniserer ikke denne kontakt.")
    await tab_to(page, "#panel-details button.outlook")
    await expect(page.locator(":focus")).to_have_text("Tænd Outlook Sync")


async def test_the_history_tab_shows_who_changed_what_when_and_through_which_channel(
    site: Site,
) -> None:
    page = await signed_in(site)
    await create(page, site, "Birthe", "Skov")
    await page.fill("#d-job_title", "Indkøbschef")
    await page.click("#details-form button[type=submit]")
    await expect(page.locator(".notice")).to_have_text("Gemt.")
    await tab(page, "more")
    rows = page.locator("#panel-more table.history tbody tr")
    await expect(rows).to_have_count(2)
    # Newest first: the edit, then the creation.
    await expect(rows.nth(0)).to_contain_text("Oplysninger ændret")
    await expect(rows.nth(0)).to_contain_text("Stilling: Indkøber → Indkøbschef")
    await expect(rows.nth(0)).to_contain_text("mette")
    await expect(rows.nth(0)).to_contain_text("API")
    await expect(rows.nth(1)).to_contain_text("Oprettet")
    await expect(rows.nth(1)).to_contain_text("Efternavne: tom → Skov")
    # Times in Danish, in the UI's time zone.
    year = datetime.now(UTC).year
    await expect(rows.nth(0)).to_contain_text(
        re.compile(rf"\d{{1,2}}\. \w+\.? {year} kl\. \d\d\.\d\d")
    )
    provenance = page.locator("#panel-more table.provenance tbody tr", has_text="Stilling")
    await expect(provenance).to_contain_text("mette")


async def test_the_history_tab_pages_back_to_the_first_change(site: Site) -> None:
    page = await signed_in(site, locale="en-GB")
    url = await create(page, site, "Carl", "Dahl")
    contact_id = url.split("?")[0].rsplit("/", 1)[-1]
    token = mint_token(site.settings, "mette")
    async with httpx.AsyncClient(
        base_url=site.settings.contacts_api_url, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        for n in range(30):  # more changes than a history page holds
            answer = await api.patch(f"/contacts/{contact_id}", json={"department": f"Afd {n}"})
            assert answer.status_code == 200, answer.text
    await page.goto(f"{url.split('?')[0]}?tab=more&v=31")
    rows = page.locator("#panel-more table.history tbody tr")
    await expect(rows).to_have_count(25)
    await expect(rows.nth(0)).to_contain_text("Department: Afd 28 → Afd 29")
    await page.get_by_role("link", name="Older changes").click()
    await expect(rows).to_have_count(6)
    await expect(rows.nth(5)).to_contain_text("Created")
    await expect(page.get_by_role("link", name="Older changes")).to_have_count(0)
    await page.get_by_role("link", name="Newest changes").click()
    await expect(rows.nth(0)).to_contain_text("Afd 29")


async def test_earlier_photos_stay_on_the_photo_tab(site: Site, tmp_path: Path) -> None:
    page = await signed_in(site)
    await create(page, site, "Dorte", "Eng")
    await tab(page, "photo")
    await expect(page.locator("#panel-photo")).to_contain_text("Ingen tidligere fotos.")
    for n, (size, colour) in enumerate([((30, 20), "red"), ((50, 40), "blue")]):
        picture = tmp_path / f"p{n}.png"
        picture.write_bytes(image_bytes("PNG", size, colour))
        await page.set_input_files("#photo-file", str(picture))
        await page.click("form[enctype] button[type=submit]")
        await expect(page.locator(".notice")).to_have_text("Gemt.")
    current = page.locator("#panel-photo img.photo")
    await expect(current).to_be_visible()
    assert await current.evaluate("i => i.naturalWidth") == 50
    earlier = page.locator("#panel-photo .photo-list li")
    await expect(earlier).to_have_count(1)
    await expect(earlier).to_contain_text("Sat af mette")
    thumb = earlier.locator("img")
    await expect(thumb).to_have_attribute("alt", re.compile("^Foto af Dorte Eng fra "))

    # The earlier photo's own bytes, through the web UI from the contacts service.
    async def loaded() -> bool:
        return bool(await thumb.evaluate("i => i.complete && i.naturalWidth === 30"))

    await eventually(loaded, "the earlier photo, 30 pixels wide, loaded")


async def test_undoing_a_job_change_makes_the_former_version_current_again(site: Site) -> None:
    page = await signed_in(site)
    former = await create(page, site, "Erik", "Friis")
    await tab(page, "employments")
    await expect(page.get_by_role("button", name="Fortryd jobskiftet")).to_have_count(0)
    await page.fill("#j-company_name", "Fejlfirma ApS")
    await page.click("form[action$='/job-change'] button[type=submit]")
    await expect(page.locator(".contact-header")).to_contain_text("Fejlfirma ApS")
    await page.get_by_role("button", name="Fortryd jobskiftet").click()
    assert page.url.split("?")[0] == former.split("?")[0]
    await expect(page.locator(".contact-header")).to_contain_text("Indkøber, Nordlys A/S")
    await expect(page.locator(".contact-header .status")).to_have_text("Aktuel")
    rows = page.locator("#panel-employments table tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.filter(has_text="Fejlfirma ApS")).to_contain_text("Trukket tilbage")
    await expect(rows.filter(has_text="Nordlys A/S")).to_contain_text("Aktuel")
    await tab(page, "more")
    await expect(page.locator("#panel-more table.history tbody tr").first).to_contain_text(
        "Jobskifte fortrudt"
    )


async def test_correcting_a_typo_in_the_employment(site: Site) -> None:
    page = await signed_in(site, locale="en-GB")
    await create(page, site, "Freja", "Gram")
    await tab(page, "employments")
    await page.get_by_text("Correct the employment").click()
    await page.fill("#k-company_name", "Nordlyst A/S")
    await page.fill("#k-started_on", "2024-03-01")
    await page.click("form[action$='/employment-correction'] button[type=submit]")
    await expect(page.locator(".contact-header")).to_contain_text("Nordlyst A/S")
    row = page.locator("#panel-employments table tbody tr")
    await expect(row).to_contain_text("1 Mar 2024")
    await tab(page, "more")
    newest = page.locator("#panel-more table.history tbody tr").first
    await expect(newest).to_contain_text("Employment corrected")
    await expect(newest).to_contain_text("Company name: Nordlys A/S → Nordlyst A/S")


async def test_an_admin_erases_a_person_after_confirming_what_will_happen(site: Site) -> None:
    page = await signed_in(site)
    url = await create(page, site, "Gitte", "Holm")
    await expect(page.get_by_role("link", name="Slet personen")).to_have_count(0)
    admin = await signed_in(site, "anna", admin=True)
    await admin.goto(url)
    await admin.get_by_role("link", name="Slet personen").click()
    await expect(admin.locator("h1")).to_have_text("Slet Gitte Holm")
    await expect(admin.locator("main")).to_contain_text("kan ikke genskabes")
    await expect(admin.locator("main table tbody tr")).to_contain_text("Nordlys A/S")
    await admin.fill("#reason", "Anmodning efter GDPR art. 17")
    await admin.check("#confirm")
    await admin.get_by_role("button", name="Slet personen").click()
    await expect(admin.locator(".contact-header .status")).to_have_text("Slettet")
    await expect(admin.locator(".contact-header h1")).not_to_contain_text("Gitte")
    await page.reload()
    await expect(page.locator(".contact-header .status")).to_have_text("Slettet")


async def test_details_show_the_relations_and_page_the_activities(site: Site) -> None:
    page = await signed_in(site, locale="en-GB")
    email = f"{uuid4().hex[:10]}@nordlys.dk"
    url = await create(page, site, "Hans", "Ibsen", email)
    contact_id = url.split("?")[0].rsplit("/", 1)[-1]
    s, p = site.settings, site.pipeline
    auth = {"Authorization": f"Bearer {mint_token(s, 'mette')}"}
    async with httpx.AsyncClient(base_url=s.contacts_api_url, headers=auth) as api:
        mine = (await api.get(f"/contacts/{contact_id}")).json()
        colleague = await api.post(
            "/contacts",
            json={"company_id": mine["company_id"], "company_name": "Nordlys A/S",
                  "first_names": "Inge", "last_names": "Juhl", "job_title": "Lagerchef"},
        )  # fmt: skip
        assert colleague.status_code == 201, colleague.text
    for n in range(21):  # one more than a page of activities
        sent, subject = datetime.now(UTC).isoformat(), f"Mail {n:02d}"
        mail = _event(
            "EmailLogged",
            message_id=f"<{uuid4()}@x>",
            from_address=email,
            to=["salg@kontakt.example"],
            cc=[],
            subject=subject,
            sent_at=sent,
        )
        await p.produce(s.activities_topic, mail)
    async with httpx.AsyncClient(base_url=s.query_api_url, headers=auth) as q:

        async def arrived() -> bool:
            details = (await q.get(f"/contacts/{contact_id}")).json()
            mails = (await q.get(f"/contacts/{contact_id}/activities")).json()
            return mails["total"] == 21 and len(details["colleagues"]) == 1

        await eventually(arrived, "21 e-mails and a colleague on the contact")
    await page.reload()
    await expect(page.locator(".relations .colleagues")).to_contain_text("Inge Juhl, Lagerchef")
    rows = page.locator("#panel-details table.activities tbody tr")
    await expect(rows).to_have_count(20)
    await expect(rows.first).to_contain_text("Mail 20")
    await expect(rows.first).to_contain_text("salg@kontakt.example")
    await page.get_by_role("link", name="Next").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Mail 00")
    await expect(page.locator("#panel-details .paging")).to_contain_text("Showing 21-21 of 21")
    await page.get_by_role("link", name="Previous").click()
    await expect(rows).to_have_count(20)
    await page.locator(".relations .colleagues a").click()
    await expect(page.locator("h1")).to_have_text("Inge Juhl")
