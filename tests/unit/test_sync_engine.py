"""The link state machine driven through a fake Graph port and a fake contacts service."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any
from uuid import UUID, uuid4

from services.sync import domain
from services.sync.contacts_api import ContactMovedError, Photo
from services.sync.engine import Engine, Work
from services.sync.graph import GraphNotFoundError, GraphPermanentError, GraphTransientError
from services.sync.photos import fit_for_graph
from tests.images import image_bytes


class FakeGraph:
    """In-memory mailboxes with scripted failures; counts writes."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, dict[str, Any]]] = {}
        self.photos: dict[str, bytes] = {}
        self.writes: Counter[str] = Counter()
        self.category_reads = 0
        self.fail_next: list[Exception] = []
        self.lose_create_answer = False
        self.forbidden: set[str] = set()
        self._n = 0

    def _check(self, mailbox: str) -> None:
        if mailbox in self.forbidden:
            raise GraphPermanentError(403, "ErrorAccessDenied", "Access is denied.")
        if self.fail_next:
            raise self.fail_next.pop(0)

    def folder(self, mailbox: str) -> dict[str, dict[str, Any]]:
        return self.items.setdefault(mailbox, {})

    async def ensure_folder(self, mailbox: str) -> str:
        self._check(mailbox)
        self.folder(mailbox)
        return f"folder-{mailbox}"

    def forget_folder(self, mailbox: str) -> None:
        pass

    async def find_contacts(self, mailbox: str, folder_id: str, crm_ids: list[str]) -> list[str]:
        self._check(mailbox)
        return sorted(
            gid
            for gid, body in self.folder(mailbox).items()
            if body["singleValueExtendedProperties"][0]["value"] in crm_ids
        )

    async def create_contact(self, mailbox: str, folder_id: str, body: dict[str, Any]) -> str:
        self._check(mailbox)
        self.writes["create"] += 1
        self._n += 1
        gid = f"g{self._n}"
        self.folder(mailbox)[gid] = dict(body)
        if self.lose_create_answer:
            self.lose_create_answer = False
            raise GraphTransientError(0, "RemoteProtocolError", "connection dropped")
        return gid

    async def update_contact(self, mailbox: str, graph_id: str, body: dict[str, Any]) -> None:
        self._check(mailbox)
        self.writes["update"] += 1
        if graph_id not in self.folder(mailbox):
            raise GraphNotFoundError(404, "ErrorItemNotFound", "gone")
        item = self.folder(mailbox)[graph_id]
        # As Graph: extended properties named in the body are set, the others kept.
        props = {p["id"]: p for p in item.get("singleValueExtendedProperties", [])}
        props.update({p["id"]: p for p in body.get("singleValueExtendedProperties", [])})
        item.update({**body, "singleValueExtendedProperties": list(props.values())})

    async def categories(self, mailbox: str, graph_id: str) -> tuple[list[str], str | None]:
        self._check(mailbox)
        self.category_reads += 1
        if graph_id not in self.folder(mailbox):
            raise GraphNotFoundError(404, "ErrorItemNotFound", "gone")
        item = self.folder(mailbox)[graph_id]
        props = {p["id"]: p["value"] for p in item.get("singleValueExtendedProperties", [])}
        return list(item.get("categories") or []), props.get(domain.CATEGORIES_PROPERTY)

    async def delete_contact(self, mailbox: str, graph_id: str) -> bool:
        self._check(mailbox)
        self.writes["delete"] += 1
        return self.folder(mailbox).pop(graph_id, None) is not None

    async def put_photo(self, mailbox: str, graph_id: str, data: bytes, media_type: str) -> None:
        self._check(mailbox)
        self.writes["photo"] += 1
        if graph_id not in self.folder(mailbox):
            raise GraphNotFoundError(404, "ErrorItemNotFound", "gone")
        self.photos[graph_id] = data

    async def has_photo(self, mailbox: str, graph_id: str) -> bool:
        self._check(mailbox)
        return graph_id in self.photos

    async def delete_contacts(self, mailbox: str, graph_ids: list[str]) -> dict[str, int]:
        self._check(mailbox)
        self.writes["batch"] += 1
        return {g: 204 if self.folder(mailbox).pop(g, None) else 404 for g in graph_ids}


class FakeContacts:
    """The contacts service: photos by contact, and switch-off calls recorded."""

    def __init__(self) -> None:
        self.photos: dict[UUID, Photo] = {}
        self.switched_off: list[tuple[UUID, str, str]] = []
        self.moved: dict[UUID, UUID] = {}
        self.version = 10

    async def photo(self, contact_id: UUID) -> Photo | None:
        return self.photos.get(contact_id)

    async def switch_off(self, contact_id: UUID, user_id: str, reason: str) -> int:
        if contact_id in self.moved:
            raise ContactMovedError(self.moved[contact_id])
        self.switched_off.append((contact_id, user_id, reason))
        self.version += 1
        return self.version


class FakeProgress:
    def __init__(self) -> None:
        self.states: list[str] = []

    async def progress(self, link: domain.Link) -> None:
        self.states.append(link.state)


def snap(**overrides: Any) -> domain.Snapshot:
    base = domain.Snapshot(
        contact_id=uuid4(),
        person_id=uuid4(),
        version=1,
        status="current",
        company_name="Acme",
        details={"first_names": "Sofie", "last_names": "Lund", "work_email": "s@acme.example"},
        infotags=(),
        photo_hash=None,
    )
    return replace(base, **overrides)


class Rig:
    def __init__(self) -> None:
        self.graph = FakeGraph()
        self.contacts = FakeContacts()
        self.progress = FakeProgress()
        self.engine = Engine(self.graph, self.contacts, self.progress)

    async def step(self, link: domain.Link, s: domain.Snapshot) -> Any:
        [result] = await self.engine.run([Work(link, s, [s.contact_id])])
        return result


async def test_switching_on_creates_one_item_with_photo_and_reports_linked() -> None:
    rig = Rig()
    s = snap(photo_hash="h1")
    png = image_bytes("PNG")
    rig.contacts.photos[s.contact_id] = Photo(png, "image/png", "h1")
    link = domain.Link("bob", s.person_id, s.contact_id, wanted=True)
    result = await rig.step(link, s)
    assert result.done and result.link.state == "linked" and result.outcomes == [("linked", None)]
    assert rig.progress.states == ["linking"]
    jpeg = fit_for_graph(png, "image/png")
    assert len(rig.graph.folder("bob")) == 1 and rig.graph.photos == {"g1": jpeg}
    assert result.link.pushed_photo == "h1"


async def test_a_removed_photo_replaces_the_item_by_one_without_photo() -> None:
    rig = Rig()
    s = snap(photo_hash="h1")
    rig.contacts.photos[s.contact_id] = Photo(image_bytes("JPEG"), "image/jpeg", "h1")
    link = domain.Link("bob", s.person_id, s.contact_id, wanted=True)
    first = await rig.step(link, s)
    assert first.link.graph_id in rig.graph.photos
    del rig.contacts.photos[s.contact_id]
    result = await rig.step(first.link, replace(s, version=2, photo_hash=None))
    assert result.done and result.link.state == "linked" and result.link.pushed_photo is None
    assert list(rig.graph.folder("bob")) == [result.link.graph_id] != [first.link.graph_id]
    assert result.link.graph_id not in rig.graph.photos


async def test_categories_the_user_set_in_outlook_survive_an_update() -> None:
    rig = Rig()
    s = snap(infotags=("VIP",))
    first = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    item = rig.graph.folder("bob")[first.link.graph_id]
    item["categories"] = [*item["categories"], "Golf"]  # the user, in Outlook
    await rig.step(first.link, replace(s, version=2, infotags=("Partner",)))
    assert item["categories"] == ["Golf", "Partner"]


async def test_an_update_that_leaves_kontakts_categories_as_they_were_leaves_them_unread() -> None:
    rig = Rig()
    s = snap(infotags=("VIP",))
    first = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    item = rig.graph.folder("bob")[first.link.graph_id]
    item["categories"] = ["VIP", "Golf"]  # the user, in Outlook
    changed = replace(s, version=2, details={**s.details, "job_title": "CFO"})
    result = await rig.step(first.link, changed)
    assert result.done and result.outcomes == [("updated", None)]
    assert rig.graph.category_reads == 0 and rig.graph.writes["update"] == 1
    assert item["jobTitle"] == "CFO" and item["categories"] == ["VIP", "Golf"]
    props = {p["id"]: p["value"] for p in item["singleValueExtendedProperties"]}
    assert props[domain.CATEGORIES_PROPERTY] == '["VIP"]'
    # Kontakt's categories change next: the user's are read and kept.
    await rig.step(result.link, replace(changed, version=3, infotags=("Partner",)))
    assert rig.graph.category_reads == 1 and item["categories"] == ["Golf", "Partner"]


async def test_a_link_without_a_record_of_its_categories_reads_and_merges_them() -> None:
    rig = Rig()
    s = snap(infotags=("VIP",))
    first = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    assert first.link.pushed_categories == domain.categories_hash({"categories": ["VIP"]})
    item = rig.graph.folder("bob")[first.link.graph_id]
    item["categories"] = ["VIP", "Golf"]
    before = replace(first.link, pushed_categories=None)  # linked before the record existed
    changed = replace(s, version=2, details={**s.details, "job_title": "CFO"})
    result = await rig.step(before, changed)
    assert rig.graph.category_reads == 1 and item["categories"] == ["Golf", "VIP"]
    assert result.link.pushed_categories == first.link.pushed_categories


async def test_a_user_without_a_mapped_mailbox_is_reported_failed_and_not_synced() -> None:
    rig = Rig()
    rig.engine.mailbox_of = lambda user_id: domain.mailbox_for(
        {"bob": "bob@contoso.example"}, user_id
    )
    s = snap()
    result = await rig.step(domain.Link("eve", s.person_id, s.contact_id, wanted=True), s)
    assert result.done and result.link.state == "failed"
    assert result.outcomes == [("failed", result.error)] and "eve" in (result.error or "")
    assert rig.graph.items == {} and sum(rig.graph.writes.values()) == 0
    mapped = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    assert mapped.link.state == "linked" and list(rig.graph.items) == ["bob@contoso.example"]


async def test_an_unchanged_contact_costs_no_graph_write() -> None:
    rig = Rig()
    s = snap()
    first = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    before = sum(rig.graph.writes.values())
    again = await rig.step(first.link, replace(s, version=7))
    assert again.outcomes == [] and sum(rig.graph.writes.values()) == before


async def test_a_details_change_is_one_update() -> None:
    rig = Rig()
    s = snap()
    first = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    rig.graph.writes.clear()
    changed = replace(s, details={**s.details, "job_title": "CEO"})
    result = await rig.step(first.link, changed)
    assert rig.graph.writes == Counter({"update": 1}) and result.outcomes == [("updated", None)]
    assert rig.graph.folder("bob")["g1"]["jobTitle"] == "CEO"


async def test_a_job_change_updates_the_same_item_with_the_new_contact_id() -> None:
    rig = Rig()
    s = snap()
    first = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    new = replace(s, contact_id=uuid4(), company_name="Beta")
    moved = domain.apply_move(first.link, new.contact_id, ("bob",))
    result = await rig.step(moved, new)
    item = rig.graph.folder("bob")["g1"]
    assert len(rig.graph.folder("bob")) == 1 and item["companyName"] == "Beta"
    assert item["singleValueExtendedProperties"][0]["value"] == str(new.contact_id)
    assert result.link.graph_id == "g1"


async def test_a_lost_create_answer_is_found_again_instead_of_duplicated() -> None:
    rig = Rig()
    s = snap()
    link = domain.Link("bob", s.person_id, s.contact_id, wanted=True)
    rig.graph.lose_create_answer = True
    first = await rig.step(link, s)
    assert not first.done and first.link.state == "linking"
    second = await rig.step(first.link, s)
    assert second.done and second.link.graph_id == "g1" and len(rig.graph.folder("bob")) == 1


async def test_switching_off_archiving_or_erasing_deletes_the_item() -> None:
    changes: tuple[dict[str, Any], ...] = ({"status": "archived"}, {"status": "erased"}, {})
    for change in changes:
        rig = Rig()
        s = snap()
        first = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
        link = first.link if change else replace(first.link, wanted=False)
        result = await rig.step(link, replace(s, **change))
        assert rig.graph.folder("bob") == {} and result.link.state == "off"
        assert result.outcomes[0][0] == "unlinked"


async def test_deletions_of_one_mailbox_go_as_one_batch() -> None:
    rig = Rig()
    work = []
    for _ in range(3):
        s = snap()
        first = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
        work.append(Work(replace(first.link, wanted=False), s, [s.contact_id]))
    rig.graph.writes.clear()
    results = await rig.engine.run(work)
    assert rig.graph.writes == Counter({"batch": 1}) and rig.graph.folder("bob") == {}
    assert all(r.link.state == "off" for r in results)


async def test_an_item_the_user_deleted_is_not_recreated_and_their_switch_goes_off() -> None:
    rig = Rig()
    s = snap()
    first = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    rig.graph.folder("bob").clear()  # the user deletes it in Outlook
    result = await rig.step(first.link, replace(s, details={**s.details, "job_title": "CEO"}))
    assert result.outcomes == [("unlinked", domain.DELETED_IN_OUTLOOK)]
    assert rig.contacts.switched_off == [(s.contact_id, "bob", domain.DELETED_IN_OUTLOOK)]
    assert result.link.suppressed and result.link.state == "off"
    rig.graph.writes.clear()
    again = await rig.step(result.link, replace(s, version=9))
    assert sum(rig.graph.writes.values()) == 0 and again.outcomes == []
    assert rig.graph.folder("bob") == {}


async def test_the_switch_off_follows_the_person_to_the_new_job() -> None:
    rig = Rig()
    s = snap()
    first = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    successor = uuid4()
    rig.contacts.moved[s.contact_id] = successor
    rig.graph.folder("bob").clear()
    result = await rig.step(first.link, replace(s, infotags=("x",)))
    assert rig.contacts.switched_off[0][0] == successor
    assert result.link.suppressed_contact_id == successor
    # The successor's creation still lists bob (it was copied before our switch-off).
    assert domain.apply_switch(result.link, successor, True, 1).suppressed


async def test_a_forbidden_mailbox_is_parked_as_failed_with_its_reason() -> None:
    rig = Rig()
    rig.graph.forbidden.add("bob")
    s = snap()
    result = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    assert result.done and result.link.state == "failed"
    assert result.outcomes[0][0] == "failed" and "403" in (result.outcomes[0][1] or "")


async def test_a_transient_failure_is_retried_later_without_an_outcome() -> None:
    rig = Rig()
    rig.graph.fail_next = [GraphTransientError(503, "ServiceUnavailable", "busy")]
    s = snap()
    result = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    assert not result.done and result.outcomes == [] and result.link.graph_id is None


async def test_a_photo_over_graphs_limit_is_not_uploaded_and_not_retried() -> None:
    rig = Rig()
    s = snap(photo_hash="big")
    rig.contacts.photos[s.contact_id] = Photo(b"x" * domain.MAX_PHOTO_BYTES, "image/jpeg", "big")
    result = await rig.step(domain.Link("bob", s.person_id, s.contact_id, wanted=True), s)
    assert rig.graph.writes["photo"] == 0 and result.link.pushed_photo == "big"
    assert domain.plan(result.link, s).kind == "noop"
