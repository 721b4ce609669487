"""Carries out the link state machine's plans through ports (Graph, contacts API, progress).

The engine holds no I/O of its own: the worker gives it a Graph client, a contacts
client and a way to record progress; the unit tests give it fakes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from uuid import UUID

from services.sync import domain
from services.sync.contacts_api import (
    ContactMovedError,
    ContactNotSwitchableError,
    ContactsUnavailableError,
    Photo,
)
from services.sync.graph import GraphNotFoundError, GraphPermanentError, GraphTransientError
from services.sync.photos import JPEG, fit_for_graph
from shared.contract.sync import SyncStatus

log = logging.getLogger("kontakt.sync.engine")

#: How many job changes a switch-off follows before giving up on a moving person.
MAX_MOVES = 10


class GraphPort(Protocol):
    """The Graph operations the engine needs (services.sync.graph.GraphClient)."""

    async def ensure_folder(self, mailbox: str) -> str:
        """The sync folder's id, created on demand."""
        ...

    def forget_folder(self, mailbox: str) -> None:
        """Drop a cached folder id."""
        ...

    async def find_contacts(self, mailbox: str, folder_id: str, crm_ids: list[str]) -> list[str]:
        """Items whose extended property holds one of the CRM contact ids."""
        ...

    async def create_contact(self, mailbox: str, folder_id: str, body: dict[str, Any]) -> str:
        """Create an item; its id."""
        ...

    async def update_contact(self, mailbox: str, graph_id: str, body: dict[str, Any]) -> None:
        """Update an item (GraphNotFoundError when gone)."""
        ...

    async def categories(self, mailbox: str, graph_id: str) -> tuple[list[str], str | None]:
        """An item's categories and Kontakt's categories property."""
        ...

    async def delete_contact(self, mailbox: str, graph_id: str) -> bool:
        """Delete an item; False when already gone."""
        ...

    async def put_photo(self, mailbox: str, graph_id: str, data: bytes, media_type: str) -> None:
        """Upload an item's photo."""
        ...

    async def has_photo(self, mailbox: str, graph_id: str) -> bool:
        """Whether an item shows a photo."""
        ...

    async def delete_contacts(self, mailbox: str, graph_ids: list[str]) -> dict[str, int]:
        """Delete several items of a mailbox ($batch); HTTP status per id."""
        ...


class ContactsPort(Protocol):
    """The contacts service (services.sync.contacts_api.ContactsClient)."""

    async def photo(self, contact_id: UUID) -> Photo | None:
        """The current photo, or None."""
        ...

    async def switch_off(self, contact_id: UUID, user_id: str, reason: str) -> int:
        """Switch a user's sync off; the contact's version afterwards."""
        ...


class ProgressPort(Protocol):
    """Records an intermediate link state before a Graph write."""

    async def progress(self, link: domain.Link) -> None:
        """Record the link's state."""
        ...


@dataclass
class StepResult:
    """A link after one step: its state, the outcomes to publish, and whether it is settled."""

    link: domain.Link
    outcomes: list[tuple[SyncStatus, str | None]] = field(default_factory=list)
    done: bool = True
    error: str | None = None


@dataclass(frozen=True)
class Work:
    """A link to reconcile, its contact version and every contact id of the person."""

    link: domain.Link
    snapshot: domain.Snapshot
    person_contact_ids: list[UUID]


def _unlink_reason(link: domain.Link, snap: domain.Snapshot) -> str:
    if snap.status == "erased":
        return "the person was erased"
    if snap.status == "archived":
        return "the contact was archived"
    if link.suppressed:
        return domain.DELETED_IN_OUTLOOK
    return "sync switched off"


class Engine:
    """One step of the state machine per link, with Graph's and the contacts API's answers."""

    def __init__(
        self,
        graph: GraphPort,
        contacts: ContactsPort,
        progress: ProgressPort,
        mailbox_of: Callable[[str], str] = lambda user_id: user_id,
    ) -> None:
        self.graph = graph
        self.contacts = contacts
        self.progress = progress
        self.mailbox_of = mailbox_of

    async def run(self, work: list[Work]) -> list[StepResult]:
        """Step every link; deletions of one mailbox go together as $batch requests."""
        results: list[StepResult | None] = [None] * len(work)
        deletions: dict[str, list[int]] = defaultdict(list)
        singles = []
        for i, w in enumerate(work):
            mailbox = self._mailbox_or_none(w.link.user_id)
            if mailbox is not None and domain.plan(w.link, w.snapshot).kind == "delete":
                deletions[mailbox].append(i)
            else:
                singles.append(i)
        for mailbox, indexes in list(deletions.items()):
            if len(indexes) < 2:
                singles.extend(indexes)
                del deletions[mailbox]

        async def single(i: int) -> None:
            results[i] = await self.step(work[i])

        async def batched(mailbox: str, indexes: list[int]) -> None:
            for i, r in zip(indexes, await self._delete_batch(mailbox, indexes, work), strict=True):
                results[i] = r

        await asyncio.gather(
            *(single(i) for i in singles),
            *(batched(m, idx) for m, idx in deletions.items()),
        )
        return [r for r in results if r is not None]

    async def _delete_batch(
        self, mailbox: str, indexes: list[int], work: list[Work]
    ) -> list[StepResult]:
        ids = [work[i].link.graph_id or "" for i in indexes]
        try:
            statuses = await self.graph.delete_contacts(mailbox, ids)
        except GraphPermanentError as exc:
            return [self._failed(work[i].link, exc) for i in indexes]
        except GraphTransientError as exc:
            return [StepResult(work[i].link, done=False, error=str(exc)) for i in indexes]
        out = []
        for i, gid in zip(indexes, ids, strict=True):
            link, snap = work[i].link, work[i].snapshot
            status = statuses.get(gid, 503)
            if status < 300 or status == 404:
                out.append(
                    StepResult(domain.unlinked(link), [("unlinked", _unlink_reason(link, snap))])
                )
            elif status in (429, 424) or status >= 500:
                out.append(StepResult(link, done=False, error=f"batch delete: {status}"))
            else:
                out.append(self._failed(link, GraphPermanentError(status, "", "batch delete")))
        return out

    def _mailbox_or_none(self, user_id: str) -> str | None:
        try:
            return self.mailbox_of(user_id)
        except domain.UnmappedUserError:
            return None

    @staticmethod
    def _failed(link: domain.Link, exc: Exception) -> StepResult:
        reason = f"Graph refused: {exc}"
        return StepResult(
            domain.failed(link, reason), [("failed", reason)], done=True, error=reason
        )

    async def step(self, w: Work) -> StepResult:
        """Take one link one step towards what its contact and switch want."""
        link = w.link
        outcomes: list[tuple[SyncStatus, str | None]] = []
        state = _Progress(link, outcomes)
        try:
            await self._step(w, state)
        except GraphPermanentError as exc:
            failed = self._failed(state.link, exc)
            return StepResult(failed.link, [*outcomes, *failed.outcomes], True, failed.error)
        except domain.UnmappedUserError as exc:
            # Not synced at all: parked as failed until the mapping (and the contact) change.
            reason = str(exc)
            return StepResult(domain.failed(state.link, reason), [("failed", reason)], True, reason)
        except (GraphTransientError, ContactsUnavailableError) as exc:
            log.info("link %s/%s: %s (will retry)", link.user_id, link.person_id, exc)
            return StepResult(state.link, outcomes, done=False, error=str(exc))
        return StepResult(state.link, outcomes, done=True)

    async def _step(self, w: Work, state: _Progress) -> None:
        snap = w.snapshot
        mailbox = self.mailbox_of(state.link.user_id)
        p = domain.plan(state.link, snap)
        if p.kind in ("noop", "hold"):
            return
        if p.kind == "switch_off":
            await self._switch_off(state, snap)
            return
        if p.kind == "delete":
            if state.link.graph_id is None:
                raise domain.PlanError(f"delete planned for {state.link.user_id} without an item")
            await self.graph.delete_contact(mailbox, state.link.graph_id)
            state.set(domain.unlinked(state.link), ("unlinked", _unlink_reason(state.link, snap)))
            return
        if p.kind == "find_and_delete":
            folder = await self.graph.ensure_folder(mailbox)
            found = await self.graph.find_contacts(
                mailbox, folder, [str(c) for c in w.person_contact_ids]
            )
            for gid in found:
                await self.graph.delete_contact(mailbox, gid)
            reason = _unlink_reason(state.link, snap)
            state.set(domain.unlinked(state.link), ("unlinked", reason) if found else None)
            return
        if p.kind == "create":
            await self._create(w, state, p, mailbox)
            return
        if p.kind != "update" or state.link.graph_id is None:
            raise domain.PlanError(f"cannot carry out {p.kind} for {state.link.user_id}")
        gid = state.link.graph_id
        try:
            # A photo removal also patches the item: that is how a deleted item shows (404).
            if p.write_body or p.photo_hash is None:
                # Categories Kontakt did not change are left as they are: no read of them first.
                body = (
                    await self._keeping_users_categories(mailbox, gid, p.body)
                    if p.write_categories
                    else domain.without_categories(p.body)
                )
                await self.graph.update_contact(mailbox, gid, body)
                state.set(
                    replace(
                        state.link, pushed_hash=p.body_hash, pushed_categories=p.categories_hash
                    )
                )
            if p.write_photo:
                await self._push_photo(state, mailbox, gid, snap.contact_id, p)
        except GraphNotFoundError:
            state.set(domain.deleted_by_user(state.link), ("unlinked", domain.DELETED_IN_OUTLOOK))
            await self._switch_off(state, snap)
            return
        state.outcomes.append(("updated", None))

    async def _create(self, w: Work, state: _Progress, p: domain.Plan, mailbox: str) -> None:
        folder = await self.graph.ensure_folder(mailbox)
        if state.link.state != "linking":
            state.set(domain.linking(state.link))
            await self.progress.progress(state.link)
        # Our own item may exist already: a create whose answer was lost, or lost local state.
        found = await self.graph.find_contacts(
            mailbox, folder, [str(c) for c in w.person_contact_ids]
        )
        if found:
            gid = found[0]
            for duplicate in found[1:]:
                await self.graph.delete_contact(mailbox, duplicate)
            try:
                body = await self._keeping_users_categories(mailbox, gid, p.body)
                await self.graph.update_contact(mailbox, gid, body)
            except GraphNotFoundError as exc:
                raise GraphTransientError(404, "ErrorItemNotFound", "vanished, look again") from exc
        else:
            try:
                gid = await self.graph.create_contact(mailbox, folder, p.body)
            except GraphNotFoundError as exc:
                self.graph.forget_folder(mailbox)  # the user deleted the folder
                raise GraphTransientError(404, "ErrorItemNotFound", "folder is gone") from exc
        state.set(domain.linked(state.link, gid, replace(p, photo_hash=None)), ("linked", None))
        if p.photo_hash is not None or found:
            await self._push_photo(state, mailbox, gid, w.snapshot.contact_id, p)

    async def _push_photo(
        self, state: _Progress, mailbox: str, gid: str, contact_id: UUID, p: domain.Plan
    ) -> None:
        """Make the item's photo the contact's; the link records the hash it now shows."""
        photo = await self.contacts.photo(contact_id) if p.photo_hash is not None else None
        if photo is None:
            if await self.graph.has_photo(mailbox, gid):
                await self._replace_without_photo(state, mailbox, gid, p)
            state.set(replace(state.link, pushed_photo=None))
            return
        data = fit_for_graph(photo.data, photo.media_type)
        if data is None:
            log.warning("photo of %s cannot be made a JPEG under 4 MB: not uploaded", contact_id)
        else:
            await self.graph.put_photo(mailbox, gid, data, JPEG)
        state.set(replace(state.link, pushed_photo=photo.content_hash))

    async def _replace_without_photo(
        self, state: _Progress, mailbox: str, gid: str, p: domain.Plan
    ) -> None:
        """Graph cannot delete a contact's photo: a new item without one takes the old's place.

        The link moves to the new item before the old one goes; if the delete is lost,
        the next create or reconciliation finds two items with the CRM id and keeps one.
        """
        folder = await self.graph.ensure_folder(mailbox)
        body = await self._keeping_users_categories(mailbox, gid, p.body)
        new_gid = await self.graph.create_contact(mailbox, folder, body)
        state.set(
            replace(
                state.link,
                graph_id=new_gid,
                pushed_hash=p.body_hash,
                pushed_categories=p.categories_hash,
            )
        )
        await self.progress.progress(state.link)
        await self.graph.delete_contact(mailbox, gid)

    async def _keeping_users_categories(
        self, mailbox: str, gid: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """The body with the categories the user set in Outlook kept beside Kontakt's."""
        current, ours = await self.graph.categories(mailbox, gid)
        # An item from before the property: Kontakt wrote all its categories then.
        before = current if ours is None else domain.kontakt_categories(ours)
        return {**body, "categories": domain.merge_categories(current, before, body["categories"])}

    async def _switch_off(self, state: _Progress, snap: domain.Snapshot) -> None:
        """Have the contacts service record that the user's sync is off, and why."""
        contact_id = state.link.contact_id
        for _ in range(MAX_MOVES):
            try:
                version = await self.contacts.switch_off(
                    contact_id, state.link.user_id, domain.DELETED_IN_OUTLOOK
                )
            except ContactMovedError as exc:
                contact_id = exc.successor_id
                continue
            except ContactNotSwitchableError:
                version = snap.version if contact_id == snap.contact_id else 1
            state.set(domain.switched_off(state.link, contact_id, version))
            return
        raise ContactsUnavailableError(f"person {snap.person_id} keeps moving; try again")


class _Progress:
    """The link as far as this step got, with the outcomes so far (kept on errors)."""

    def __init__(self, link: domain.Link, outcomes: list[tuple[SyncStatus, str | None]]) -> None:
        self.link = link
        self.outcomes = outcomes

    def set(self, link: domain.Link, outcome: tuple[SyncStatus, str | None] | None = None) -> None:
        self.link = link
        if outcome is not None:
            self.outcomes.append(outcome)
