"""A small demo data set telling the seed page's story; seeding twice changes nothing.

Two companies; contacts with infotags and a photo; an e-mail exchange and an
opportunity, campaign and project from the "other services" topics; Outlook
sync switched on by the demo user; one person changing job.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from PIL import Image, ImageDraw

from shared.auth import ADMIN_ROLE, mint_token
from shared.kafka import ensure_topics
from shared.settings import KontaktSettings

DEMO_USER = "demo"
_NS = uuid.UUID("0f4c6c1e-8a55-4d7e-9f0b-6b7a2d3c9e10")


def _id(name: str) -> str:
    return str(uuid.uuid5(_NS, name))


NORDLYS, HAVBRO = _id("company:nordlys"), _id("company:havbro")

PEOPLE: list[dict[str, Any]] = [
    {"company_id": NORDLYS, "company_name": "Nordlys A/S", "first_names": "Karen Marie",
     "last_names": "Jensen", "job_title": "Indkøbschef", "department": "Indkøb",
     "work_email": "kmj@nordlys.example", "private_email": "karen.jensen@privat.example",
     "work_phone": "+45 70 10 20 30", "started_on": "2019-03-01"},
    {"company_id": NORDLYS, "company_name": "Nordlys A/S", "first_names": "Ole",
     "last_names": "Hansen", "job_title": "IT-chef", "work_email": "oh@nordlys.example",
     "private_email": "ole.hansen@privat.example"},
    {"company_id": HAVBRO, "company_name": "Havbro ApS", "first_names": "Mette",
     "last_names": "Lund", "job_title": "Direktør", "work_email": "ml@havbro.example",
     "private_email": "mette.lund@privat.example"},
]  # fmt: skip


@dataclass
class DemoIds:
    """The demo's contacts: karen (after her job change), karen_before, ole, mette."""

    contacts: dict[str, str] = field(default_factory=dict)


def portrait() -> bytes:
    """A small PNG portrait (initials on a coloured disc)."""
    img = Image.new("RGB", (96, 96), "#f4efe6")
    draw = ImageDraw.Draw(img)
    draw.ellipse((8, 8, 88, 88), fill="#3b6e8f")
    draw.text((36, 40), "KJ", fill="white")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _create(api: httpx.Client, person: dict[str, Any]) -> str:
    """Create, or find the existing current contact (by name or private e-mail)."""
    response = api.post("/contacts", json=person)
    if response.status_code == 201:
        return str(response.json()["contact_id"])
    if response.status_code == 409 and response.json().get("existing_contact_id"):
        return str(response.json()["existing_contact_id"])
    raise RuntimeError(f"demo: creating {person['first_names']} failed: {response.text}")


#: The demo's infotag catalogue, parents before children.
TAG_PATHS = ("Kunde", "Kunde/Guld", "Nyhedsbrev", "Prospekt")


def _define_tags(api: httpx.Client, admin: dict[str, str]) -> dict[str, str]:
    """The demo's catalogue tags by path, defining those missing (as an admin)."""
    listed = api.get("/infotags")
    _ok(listed)
    ids = {n["path"]: n["tag_id"] for n in listed.json()["infotags"]}
    for path in TAG_PATHS:
        if path not in ids:
            parent, _, name = path.rpartition("/")
            body = {"name": name, "parent_id": ids[parent] if parent else None}
            defined = api.post("/infotags", json=body, headers=admin)
            _ok(defined)
            ids[path] = defined.json()["tag_id"]
    return ids


def _ok(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise RuntimeError(
            f"demo: {response.request.method} {response.request.url}: {response.text}"
        )


async def _publish_inbound(settings: KontaktSettings, ids: DemoIds) -> None:
    karen, before, ole = ids.contacts["karen"], ids.contacts["karen_before"], ids.contacts["ole"]
    at = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)

    def event(name: str, **body: Any) -> bytes:
        occurred = body.pop("at", at).isoformat()
        return json.dumps({"event_id": _id(name), "occurred_at": occurred, **body}).encode()

    def email(n: int, sender: str, to: str, subject: str, sent: datetime) -> bytes:
        body = {"from": sender, "to": [to], "cc": [], "subject": subject}
        return event(
            f"email:{n}",
            at=sent,
            type="EmailLogged",
            message_id=f"<demo-{n}@kontakt>",
            sent_at=sent.isoformat(),
            **body,
        )

    sales = "sales@kontakt.example"
    from_karen = "Karen Marie Jensen <KMJ@nordlys.example>"  # a display-name form, as mailers send
    oct_2, oct_3 = (datetime(2026, 10, day, 10, 0, tzinfo=UTC) for day in (2, 3))
    now = datetime.now(UTC)
    messages: list[tuple[str, bytes | None, bytes]] = [
        (settings.activities_topic, None, email(1, sales, "kmj@nordlys.example", "Tilbud", oct_2)),
        (settings.activities_topic, None, email(2, from_karen, sales, "Re: Tilbud", oct_3)),
        # Sent after her move: it shows on her current version, which holds the address now.
        (settings.activities_topic, None, email(3, sales, PEOPLE[0]["private_email"], "Hej", now)),
    ]
    opp, camp, proj = (
        settings.opportunities_topic,
        settings.campaigns_topic,
        settings.projects_topic,
    )
    items: list[tuple[str, str, str, dict[str, Any]]] = [
        (opp, "Created", "servere", {"title": "Nye servere 2027", "status": "open"}),
        (opp, "ContactLinked", "servere", {"contact_id": before, "role": "beslutningstager"}),
        (camp, "Created", "jul", {"title": "Julekampagne 2026", "status": "running"}),
        (camp, "ContactLinked", "jul", {"contact_id": before}),
        (camp, "ContactLinked", "jul", {"contact_id": ole}),
        (proj, "Created", "udrulning", {"title": "Udrulning Q1", "status": "planned"}),
        (proj, "ContactLinked", "udrulning", {"contact_id": ole, "role": "projektleder"}),
        (proj, "ContactLinked", "udrulning", {"contact_id": karen, "role": "sponsor"}),
    ]
    for topic, kind, name, body in items:
        item_id = _id(f"{topic}:{name}")
        unique = f"{topic}:{name}:{kind}:{body.get('contact_id', '')}"
        messages.append(
            (topic, item_id.encode(), event(unique, type=kind, item_id=item_id, **body))
        )
    await ensure_topics(settings, settings.all_topics())
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def seed(settings: KontaktSettings, token: str, api_url: str | None = None) -> DemoIds:
    """Seed the demo through the contacts API and the inbound topics (idempotent)."""
    import asyncio

    ids = DemoIds()
    headers = {"Authorization": f"Bearer {token}", "X-Correlation-ID": "demo-seed"}
    with httpx.Client(
        base_url=api_url or settings.contacts_api_url, headers=headers, timeout=30
    ) as api:
        karen, ole, mette = (_create(api, p) for p in PEOPLE)
        admin = {"Authorization": f"Bearer {mint_token(settings, 'demo-admin', [ADMIN_ROLE])}"}
        tag_ids = _define_tags(api, admin)
        for contact, tags in ((karen, ["Kunde/Guld", "Nyhedsbrev"]), (ole, ["Kunde/Guld"]),
                              (mette, ["Prospekt"])):  # fmt: skip
            state = api.get(f"/contacts/{contact}").json()
            if state["status"] != "current":
                continue
            for tag in tags:
                _ok(api.post(f"/contacts/{contact}/infotags", json={"tag_id": tag_ids[tag]}))
        state = api.get(f"/contacts/{karen}").json()
        if state["company_id"] == NORDLYS:
            _ok(api.put(f"/contacts/{karen}/photo", content=portrait(),
                        headers={"Content-Type": "image/png"}))  # fmt: skip
            for contact in (karen, ole):
                _ok(api.put(f"/contacts/{contact}/outlook-sync/me", json={"enabled": True}))
            # The seed's story: Karen moves to Havbro; the Nordlys version is kept.
            moved = api.post(f"/contacts/{karen}/job-changes", json={
                "company_id": HAVBRO, "company_name": "Havbro ApS", "job_title": "CFO",
                "work_email": "kmj@havbro.example", "effective_on": "2026-11-01"})  # fmt: skip
            _ok(moved)
            karen_before, karen = karen, str(moved.json()["contact_id"])
        else:
            karen_before = str(state["predecessor_id"])
        _ok(api.put(f"/contacts/{ole}/outlook-sync/me", json={"enabled": True}))
    ids.contacts = {"karen": karen, "karen_before": karen_before, "ole": ole, "mette": mette}
    asyncio.run(_publish_inbound(settings, ids))
    return ids
