"""The verifier reads folders with delta, falls back to a full listing, and holds its place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

from services.sync.graph import DeltaChanges, GraphSyncResetError
from services.sync.worker import SyncWorker
from shared.settings import KontaktSettings

PERSON = uuid4()


class FakeStore:
    """One user with one linked item; `leased` links cannot be marked."""

    def __init__(self, link: str | None = None, leased: bool = False) -> None:
        self.links = {"bob": {"item-1": (PERSON, "item-1")}}
        self.delta_links: dict[tuple[str, str], str] = {}
        if link is not None:
            self.delta_links[("bob@x.example", "folder")] = link
        self.leased = leased
        self.marked: list[str] = []

    async def linked_items(self) -> dict[str, dict[str, tuple[UUID, str]]]:
        return self.links

    async def users(self) -> list[str]:
        return list(self.links)

    async def delta_link(self, mailbox: str, folder_id: str) -> str | None:
        return self.delta_links.get((mailbox, folder_id))

    async def save_delta_link(self, mailbox: str, folder_id: str, link: str | None) -> None:
        if link is None:
            self.delta_links.pop((mailbox, folder_id), None)
        else:
            self.delta_links[(mailbox, folder_id)] = link

    async def mark_deleted_by_user(self, user_id: str, person_id: UUID, graph_id: str) -> bool:
        if self.leased:
            return False
        self.marked.append(graph_id)
        return True

    async def persons_of(self, contact_ids: list[UUID]) -> dict[UUID, UUID]:
        return {}

    async def delete_if_stray(
        self, user_id: str, person_id: UUID, graph_id: str, delete: Callable[[], Awaitable[Any]]
    ) -> bool:
        return False


class FakeGraph:
    """A folder whose delta answers `changes`, or refuses links it did not issue."""

    def __init__(self, changes: DeltaChanges, listing: dict[str, str | None]) -> None:
        self.changes, self.listing = changes, listing
        self.rounds: list[str | None] = []
        self.listed = 0

    async def ensure_folder(self, mailbox: str) -> str:
        return "folder"

    async def delta(self, mailbox: str, folder_id: str, link: str | None) -> DeltaChanges:
        self.rounds.append(link)
        if link not in (None, "issued"):
            raise GraphSyncResetError(410, "SyncStateNotFound", "gone")
        return self.changes

    async def list_items(self, mailbox: str, folder_id: str) -> dict[str, str | None]:
        self.listed += 1
        return self.listing

    async def crm_id_of(self, mailbox: str, graph_id: str) -> str | None:
        return None


def verifier(store: FakeStore, graph: FakeGraph) -> SyncWorker:
    settings = KontaktSettings(sync_mailboxes={"bob": "bob@x.example"})
    return SyncWorker(settings, store, graph, object())  # type: ignore[arg-type]


async def test_a_removal_reported_by_the_delta_link_is_noticed_without_a_listing() -> None:
    store = FakeStore(link="issued")
    graph = FakeGraph(DeltaChanges([], ["item-1"], "next"), {})
    assert await verifier(store, graph).verify_once() == 1
    assert store.marked == ["item-1"] and graph.listed == 0 and graph.rounds == ["issued"]
    assert store.delta_links[("bob@x.example", "folder")] == "next"


async def test_a_refused_delta_link_starts_a_new_round_and_lists_the_folder() -> None:
    store = FakeStore(link="expired")
    graph = FakeGraph(DeltaChanges(["item-2"], [], "fresh"), {"item-2": None})
    assert await verifier(store, graph).verify_once() == 1  # item-1 is not in the listing
    assert graph.rounds == ["expired", None] and graph.listed == 1
    assert store.delta_links[("bob@x.example", "folder")] == "fresh"


async def test_a_removal_of_a_link_being_worked_on_keeps_the_old_delta_link() -> None:
    store = FakeStore(link="issued", leased=True)
    graph = FakeGraph(DeltaChanges([], ["item-1"], "next"), {})
    assert await verifier(store, graph).verify_once() == 0
    # The same changes come again next time, when the link can be marked.
    assert store.delta_links[("bob@x.example", "folder")] == "issued"


async def test_an_unmapped_user_is_not_read() -> None:
    store = FakeStore()
    store.links = {"eve": {"item-1": (PERSON, "item-1")}}
    graph = FakeGraph(DeltaChanges([], ["item-1"], "next"), {})
    assert await verifier(store, graph).verify_once() == 0
    assert graph.rounds == [] and store.marked == []
