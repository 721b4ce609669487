"""The contacts application: loads aggregates, calls the domain, saves atomically."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import EventStore, JSONTranscoder, Transcoding

from services.contacts.domain import (
    ERASED,
    Actor,
    ConcurrentModificationError,
    Contact,
    ContactErasedError,
    ContactError,
    ContactNotFoundError,
    DuplicateContactError,
    NearDuplicate,
    NearKey,
    NotAJobChangeError,
    PhotoInfo,
    PossibleDuplicateError,
    UniqueKey,
    event_type_name,
    near_keys,
    uniqueness_keys,
)
from services.contacts.group_commit import GroupCommitEventStore
from services.contacts.infotags import InfotagCatalogue, InfotagNotFoundError, require_admin
from services.contacts.personal_data import PersonalDataMapper, PersonCipher
from services.contacts.photos import PhotoStore
from shared.addresses import address_hash
from shared.contract.contacts import EMAIL_DETAILS
from shared.contract.infotags import CATALOGUE_ID, placement_tag_id, tag_id_for_path
from shared.retrying import write_conflicts

T = TypeVar("T")

#: Event attributes every contact event has; the rest is the event's own data.
_ENVELOPE_FIELDS = frozenset(
    {
        "originator_id",
        "originator_version",
        "timestamp",
        "person_id",
        "actor",
        "correlation_id",
        "channel",
    }
)

#: How often a command is retried when a concurrent writer saved first.
MAX_ATTEMPTS = 10

#: Key material of near-duplicate keys starts so (see domain.near_keys).
_NEAR = "near-"


def held_keys(contact: Contact) -> dict[str, str]:
    """Every key a contact holds while current: uniqueness keys and near-duplicate keys."""
    return {**uniqueness_keys(contact), **near_keys(contact)}


class DateAsISO(Transcoding):
    """Stores `date` values as ISO strings."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        """Encode a date."""
        return obj.isoformat()

    def decode(self, data: str) -> date:
        """Decode a date."""
        return date.fromisoformat(data)


class SetAsSortedList(Transcoding):
    """Stores `set` values (in snapshots) as sorted lists."""

    type = set
    name = "set"

    def encode(self, obj: set[Any]) -> list[Any]:
        """Encode a set."""
        return sorted(obj)

    def decode(self, data: list[Any]) -> set[Any]:
        """Decode a set."""
        return set(data)


@dataclass(frozen=True)
class CommandResult:
    """What a command returns: the contact id and its version after the command."""

    contact_id: UUID
    version: int
    person_id: UUID


class ContactsApp(Application[UUID]):
    """Commands and event-store reads of contacts."""

    name = "Contacts"
    # A contact seldom has many events; snapshots bound the replay of a busy one.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Contact: 50}
    mapper: PersonalDataMapper

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        key_secret: bytes,
        photos: PhotoStore,
        cipher: PersonCipher,
        encrypt: bool = True,
    ) -> None:
        # Set before the base class builds the mapper, which needs the cipher.
        self.cipher = cipher
        # Off only to measure what per-person encryption costs (bench/): events are then
        # stored in plain text and erasure cannot shred them.
        self.encrypt = encrypt
        self._key_secret = key_secret
        self.photos = photos
        super().__init__(env)

    def construct_mapper(self) -> PersonalDataMapper:
        """A mapper that encrypts each event's personal fields under the person's key."""
        return PersonalDataMapper(
            transcoder=self.construct_transcoder(), cipher=self.cipher, encrypt=self.encrypt
        )

    def construct_event_store(self) -> EventStore[UUID]:
        """An event store that saves the commands of concurrent callers in one transaction."""
        return GroupCommitEventStore(mapper=self.mapper, recorder=self.recorder)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """Register the library's transcodings and ours."""
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())
        transcoder.register(SetAsSortedList())

    # ------------------------------------------------------------------ helpers

    def key_id(self, material: str) -> UUID:
        """The id of a uniqueness key: a keyed hash, so it is no guessable fingerprint."""
        digest = hmac.new(self._key_secret, material.encode(), hashlib.sha256).digest()
        return UUID(bytes=digest[:16])

    def _load(self, contact_id: UUID, version: int | None = None) -> Contact:
        try:
            contact: object = self.repository.get(contact_id, version=version)
        except AggregateNotFoundError:
            raise ContactNotFoundError(contact_id) from None
        if not isinstance(contact, Contact):
            raise ContactNotFoundError(contact_id)
        return contact

    def _retrying(self, attempt: Callable[[bool], T]) -> T:
        # The store refuses a save whose aggregate versions moved on meanwhile;
        # running the command again on fresh state either succeeds, or raises
        # the domain's own error (a duplicate, a version conflict). The first
        # attempt claims uniqueness keys optimistically (see _key_events).
        # Writers of one aggregate that collided back off at random, so that they do
        # not collide again in lockstep.
        for trying in write_conflicts(MAX_ATTEMPTS):
            with trying:
                return attempt(trying.retry_state.attempt_number == 1)
        raise ConcurrentModificationError(MAX_ATTEMPTS)

    def _key_events(
        self,
        changes: list[tuple[UUID, dict[str, str], dict[str, str]]],
        optimistic: bool = False,
        near_ok: set[UUID] | None = None,
    ) -> list[Any]:
        """Release and claim keys for (owner, keys before, keys after) triples.

        Uniqueness keys are claimed first, so an exact duplicate is refused as one. Then
        near-duplicate keys are joined; with near_ok given, a key other current contacts
        (but those in near_ok) hold refuses the change with PossibleDuplicateError.
        Optimistic: keys to claim are assumed new and not read first (most keys are new);
        should one exist, the save fails with RecordConflictError and the command's retry
        reads it (`_retrying` passes optimistic only to a command's first attempt).
        """
        loaded: dict[UUID, Any] = {}

        def get(material: str) -> tuple[UUID, Any]:
            kid = self.key_id(material)
            if kid not in loaded:
                kind = NearKey if material.startswith(_NEAR) else UniqueKey
                try:
                    key: object = self.repository.get(kid)
                    loaded[kid] = key if isinstance(key, kind) else None
                except AggregateNotFoundError:
                    loaded[kid] = None
            return kid, loaded[kid]

        # Releases first, so a key can move between contacts in one save.
        for owner, before, after in changes:
            for material in before.keys() - after.keys():
                _, key = get(material)
                if isinstance(key, UniqueKey):
                    key.release(owner)
                elif isinstance(key, NearKey):
                    key.leave(owner)
        claims = [
            (owner, material, after[material])
            for owner, before, after in changes
            for material in after.keys() - before.keys()
        ]
        # Uniqueness keys before near-duplicate keys: an exact duplicate is refused as one.
        claims.sort(key=lambda claim: claim[1].startswith(_NEAR))
        matched: dict[UUID, list[str]] = {}
        for owner, material, field in claims:
            near = material.startswith(_NEAR)
            if optimistic and (kid := self.key_id(material)) not in loaded:
                new = NearKey.join_new if near else UniqueKey.claim_new
                loaded[kid] = new(kid, field, owner)
                continue
            kid, key = get(material)
            if key is None:
                new = NearKey.join_new if near else UniqueKey.claim_new
                loaded[kid] = new(kid, field, owner)
            elif near:
                if near_ok is not None:
                    for other in sorted(key.members - near_ok - {owner}):
                        matched.setdefault(other, []).append(field)
                key.join(owner)
            else:
                try:
                    key.claim(owner)
                except DuplicateContactError as exc:
                    # Name the field the way this claimant used it.
                    raise DuplicateContactError(field, exc.existing_id) from None
        if matched and (candidates := self._near_duplicates(matched, set())):
            raise PossibleDuplicateError(candidates)
        return [k for k in loaded.values() if k is not None and k.pending_events]

    def _near_duplicates(
        self, matched: dict[UUID, list[str]], distinct_from: set[UUID], of: UUID | None = None
    ) -> list[NearDuplicate]:
        """The named candidates of matched {contact id: rules}, as they read now.

        A member no longer current (left behind by a race with the backfill) is no candidate.
        """
        found: list[NearDuplicate] = []
        for contact_id, rules in matched.items():
            other = self._load(contact_id)
            if not other.is_current:
                continue
            found.append(
                NearDuplicate(
                    contact_id=contact_id,
                    first_names=other.first_names,
                    last_names=other.last_names,
                    matched=tuple(sorted(set(rules))),
                    declared_distinct=contact_id in distinct_from
                    or (of is not None and of in other.distinct_from),
                )
            )
        return sorted(found, key=lambda c: (c.last_names, c.first_names, str(c.contact_id)))

    def _change(
        self,
        contact_id: UUID,
        expected_version: int | None,
        mutate: Callable[[Contact], object],
        near_ok: set[UUID] | None = None,
    ) -> CommandResult:
        def attempt(optimistic: bool) -> CommandResult:
            contact = self._load(contact_id)
            contact.check_version(expected_version)
            before = held_keys(contact)
            mutate(contact)
            if contact.pending_events:
                keys = self._key_events(
                    [(contact.id, before, held_keys(contact))], optimistic, near_ok
                )
                self.save(contact, *keys)
            return CommandResult(contact.id, contact.version, contact.person_id)

        return self._retrying(attempt)

    # ----------------------------------------------------------------- commands

    def create_contact(
        self,
        actor: Actor,
        *,
        company_id: UUID,
        company_name: str,
        details: dict[str, str | None],
        started_on: date | None = None,
        distinct_from: list[UUID] | None = None,
    ) -> CommandResult:
        """Create a contact (the first version of a new person).

        Refused with PossibleDuplicateError when current contacts at the company look like
        the same person, unless each of them is named in distinct_from.
        """
        contact_id, person_id = uuid4(), uuid4()

        def attempt(optimistic: bool) -> CommandResult:
            contact = Contact.create(
                contact_id=contact_id,
                person_id=person_id,
                actor=actor,
                company_id=company_id,
                company_name=company_name,
                details=details,
                started_on=started_on,
                distinct_from=distinct_from,
            )
            keys = self._key_events(
                [(contact.id, {}, held_keys(contact))], optimistic, set(distinct_from or ())
            )
            self.save(contact, *keys)
            return CommandResult(contact.id, contact.version, contact.person_id)

        return self._retrying(attempt)

    def change_details(
        self,
        actor: Actor,
        contact_id: UUID,
        changes: dict[str, str | None],
        expected_version: int | None = None,
        distinct_from: list[UUID] | None = None,
    ) -> CommandResult:
        """Change detail fields of a current contact.

        A change that makes it look like other current contacts at the company (a rename,
        a phone number) is refused with PossibleDuplicateError unless distinct_from names them.
        """
        return self._change(
            contact_id,
            expected_version,
            lambda c: c.change_details(actor, changes, distinct_from),
            near_ok=set(distinct_from or ()),
        )

    def change_job(
        self,
        actor: Actor,
        contact_id: UUID,
        *,
        company_id: UUID,
        company_name: str,
        job: dict[str, str | None],
        effective_on: date,
        expected_version: int | None = None,
    ) -> tuple[CommandResult, CommandResult]:
        """End the employment and create the person's new version; returns (old, new)."""
        successor_id = uuid4()

        def attempt(optimistic: bool) -> tuple[CommandResult, CommandResult]:
            old = self._load(contact_id)
            old.check_version(expected_version)
            before = held_keys(old)
            new = old.change_job(
                actor,
                successor_id=successor_id,
                company_id=company_id,
                company_name=company_name,
                job=job,
                effective_on=effective_on,
            )
            keys = self._key_events(
                [(old.id, before, held_keys(old)), (new.id, {}, held_keys(new))],
                optimistic,
            )
            self.save(old, new, *keys)
            return (
                CommandResult(old.id, old.version, old.person_id),
                CommandResult(new.id, new.version, new.person_id),
            )

        return self._retrying(attempt)

    def undo_job_change(
        self, actor: Actor, contact_id: UUID, expected_version: int | None = None
    ) -> tuple[CommandResult, CommandResult]:
        """Undo the job change that created a current version; returns (withdrawn, current).

        The version is withdrawn and its predecessor is current again, in one save: the
        withdrawn version's keys are released and the predecessor's claimed again (refused
        with DuplicateContactError, nothing changed, when another current contact took one
        meanwhile). Its infotags, Outlook switches and photo go back with the person.
        """

        def attempt(optimistic: bool) -> tuple[CommandResult, CommandResult]:
            new = self._load(contact_id)
            new.check_version(expected_version)
            new.check_editable()
            if new.predecessor_id is None:
                raise NotAJobChangeError()
            former = self._load(new.predecessor_id)
            before = held_keys(new)
            new.withdraw_job_change(actor)
            former.undo_job_change(actor, new)
            keys = self._key_events(
                [(new.id, before, held_keys(new)), (former.id, {}, held_keys(former))],
                optimistic,
            )
            self.save(new, former, *keys)
            return (
                CommandResult(new.id, new.version, new.person_id),
                CommandResult(former.id, former.version, former.person_id),
            )

        return self._retrying(attempt)

    def correct_employment(
        self,
        actor: Actor,
        contact_id: UUID,
        *,
        company_id: UUID | None = None,
        company_name: str | None = None,
        started_on: date | None = None,
        expected_version: int | None = None,
    ) -> CommandResult:
        """Correct an employment's company id or name or its start date (no job change).

        A job change's date is one date: correcting the start of a version that followed
        a job change moves its predecessor's end with it, in the same save. A corrected
        company id moves the name's uniqueness key (and the near-duplicate keys) to the new
        company.
        """

        def attempt(optimistic: bool) -> CommandResult:
            contact = self._load(contact_id)
            contact.check_version(expected_version)
            before = held_keys(contact)
            contact.correct_employment(
                actor, company_id=company_id, company_name=company_name, started_on=started_on
            )
            changed = [contact]
            if started_on is not None and contact.predecessor_id is not None:
                predecessor = self._load(contact.predecessor_id)
                predecessor.correct_employment(actor, ended_on=started_on)
                changed.append(predecessor)
            pending = [c for c in changed if c.pending_events]
            if pending:
                keys = self._key_events([(contact.id, before, held_keys(contact))], optimistic)
                self.save(*pending, *keys)
            return CommandResult(contact.id, contact.version, contact.person_id)

        return self._retrying(attempt)

    def toggle_outlook_sync(
        self,
        actor: Actor,
        contact_id: UUID,
        *,
        user_id: str,
        enabled: bool,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> CommandResult:
        """Switch a user's Outlook sync for a contact on or off."""
        return self._change(
            contact_id,
            expected_version,
            lambda c: c.toggle_outlook_sync(actor, user_id=user_id, enabled=enabled, reason=reason),
        )

    def add_infotag(
        self, actor: Actor, contact_id: UUID, tag: str, expected_version: int | None = None
    ) -> CommandResult:
        """Place an infotag on a contact."""
        return self._change(contact_id, expected_version, lambda c: c.add_infotag(actor, tag))

    def remove_infotag(
        self, actor: Actor, contact_id: UUID, tag: str, expected_version: int | None = None
    ) -> CommandResult:
        """Take an infotag off a contact."""
        return self._change(contact_id, expected_version, lambda c: c.remove_infotag(actor, tag))

    def add_catalogue_infotag(
        self, actor: Actor, contact_id: UUID, tag_id: UUID, expected_version: int | None = None
    ) -> CommandResult:
        """Place a catalogue tag on a contact; an inactive one is refused."""
        catalogue = self.infotag_catalogue()
        catalogue.require_placeable(tag_id)
        path = catalogue.path(tag_id)
        return self._change(
            contact_id,
            expected_version,
            lambda c: c.add_catalogue_infotag(
                actor, tag_id, path, c.placed_as(tag_id, tag_id_for_path) is not None
            ),
        )

    def remove_catalogue_infotag(
        self, actor: Actor, contact_id: UUID, tag_id: UUID, expected_version: int | None = None
    ) -> CommandResult:
        """Take a catalogue tag (active or not) off a contact."""
        return self._change(
            contact_id,
            expected_version,
            lambda c: c.remove_catalogue_infotag(
                actor, tag_id, c.placed_as(tag_id, tag_id_for_path)
            ),
        )

    def infotags_as_now(self, placements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Placements under their tags' current paths (renamed or moved since they were placed)."""
        catalogue = self.infotag_catalogue()
        shown = []
        for placed in placements:
            raw = placed.get("tag_id")
            tag_id = placement_tag_id(placed["tag"], UUID(str(raw)) if raw else None)
            if tag_id not in catalogue.tags:
                shown.append({**placed, "placed_as": placed["tag"]})
                continue
            shown.append(
                {
                    **placed,
                    "tag": catalogue.path(tag_id),
                    "tag_id": tag_id,
                    "placed_as": placed["tag"],
                    "active": catalogue.tags[tag_id]["active"],
                }
            )
        return sorted(shown, key=lambda p: p["tag"].casefold())

    def find_infotag(self, path: str) -> UUID:
        """The id of the catalogue tag at a name path (`Kunde/Guld`); InfotagNotFoundError."""
        found = self.infotag_catalogue().find_path(path)
        if found is None:
            raise InfotagNotFoundError(tag_id_for_path(path))
        return found

    # ------------------------------------------------------- infotag catalogue

    def infotag_catalogue(self, actor: Actor | None = None) -> InfotagCatalogue:
        """The catalogue as stored (before its first tag: a new one, created by actor)."""
        try:
            catalogue: object = self.repository.get(CATALOGUE_ID)
        except AggregateNotFoundError:
            catalogue = None
        if isinstance(catalogue, InfotagCatalogue):
            return catalogue
        return InfotagCatalogue.create(actor or Actor("system", "catalogue"))

    def _change_catalogue(
        self, actor: Actor, roles: frozenset[str], mutate: Callable[[InfotagCatalogue], T]
    ) -> T:
        """Run a catalogue command as an admin; a concurrent catalogue change retries it."""
        require_admin(roles)
        return self._save_catalogue(actor, mutate)

    def _save_catalogue(self, actor: Actor, mutate: Callable[[InfotagCatalogue], T]) -> T:
        def attempt(optimistic: bool) -> T:
            catalogue = self.infotag_catalogue(actor)
            result = mutate(catalogue)
            if catalogue.pending_events:
                self.save(catalogue)
            return result

        return self._retrying(attempt)

    def define_infotag(
        self, actor: Actor, roles: frozenset[str], name: str, parent_id: UUID | None
    ) -> UUID:
        """Define a catalogue tag under a parent (None: at the root); returns its id."""
        tag_id = uuid4()
        return self._change_catalogue(
            actor, roles, lambda c: c.define(actor, tag_id=tag_id, name=name, parent_id=parent_id)
        )

    def change_infotag(
        self,
        actor: Actor,
        roles: frozenset[str],
        tag_id: UUID,
        *,
        name: str | None = None,
        parent_id: UUID | None = None,
        move: bool = False,
    ) -> None:
        """Rename a tag and/or move it (move with parent_id None: to the root), atomically."""

        def mutate(catalogue: InfotagCatalogue) -> None:
            catalogue.tag(tag_id)
            if move:
                catalogue.move(actor, tag_id, parent_id)
            if name is not None:
                catalogue.rename(actor, tag_id, name)

        self._change_catalogue(actor, roles, mutate)

    def set_infotag_active(
        self, actor: Actor, roles: frozenset[str], tag_id: UUID, active: bool
    ) -> None:
        """Reactivate (True) or deactivate (False) a catalogue tag."""
        self._change_catalogue(
            actor,
            roles,
            lambda c: c.reactivate(actor, tag_id) if active else c.deactivate(actor, tag_id),
        )

    def change_photo(
        self,
        actor: Actor,
        contact_id: UUID,
        data: bytes,
        expected_version: int | None = None,
    ) -> CommandResult:
        """Store the photo's bytes and make it the contact's current photo."""
        contact = self._load(contact_id)
        # Refuse before storing anything (an erased person has no key to store under).
        contact.check_editable()
        contact.check_version(expected_version)
        # Stored first and content-addressed: should the event not be saved, the
        # blob is unreferenced and invisible, never a half-written contact.
        info: PhotoInfo = self.photos.put(contact.person_id, data)
        return self._change(contact_id, expected_version, lambda c: c.change_photo(actor, info))

    def remove_photo(
        self, actor: Actor, contact_id: UUID, expected_version: int | None = None
    ) -> CommandResult:
        """Remove a contact's current photo (earlier photos stay in history)."""
        return self._change(contact_id, expected_version, lambda c: c.remove_photo(actor))

    def archive(
        self,
        actor: Actor,
        contact_id: UUID,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> CommandResult:
        """Archive (soft-delete) a contact, releasing its uniqueness keys."""
        return self._change(contact_id, expected_version, lambda c: c.archive(actor, reason))

    def restore(
        self, actor: Actor, contact_id: UUID, expected_version: int | None = None
    ) -> CommandResult:
        """Restore an archived contact, claiming its uniqueness keys again."""
        return self._change(contact_id, expected_version, lambda c: c.restore(actor))

    def erase_person(
        self, actor: Actor, contact_id: UUID, reason: str | None = None
    ) -> list[CommandResult]:
        """Erase the person of a contact: every version records ContactErased, keys go.

        The events are saved first, then the person's data key and photo bytes
        are deleted. Erasing an erased person again finishes that deletion
        (should it have been interrupted) and raises ContactErasedError.
        """
        person_id = self._load(contact_id).person_id

        def attempt(optimistic: bool) -> list[CommandResult]:
            versions = self.employments(contact_id)
            if all(v.erased for v in versions):
                raise ContactErasedError()
            hashes = sorted(
                {address_hash(self._key_secret, a) for v in versions for a in self._addresses(v.id)}
            )
            changes: list[tuple[UUID, dict[str, str], dict[str, str]]] = []
            for version in versions:
                before = held_keys(version)
                if not version.erased:
                    version.erase(actor, reason, hashes)
                changes.append((version.id, before, {}))
            self.save(*versions, *self._key_events(changes))
            return [CommandResult(v.id, v.version, v.person_id) for v in versions]

        try:
            return self._retrying(attempt)
        finally:
            if all(v.erased for v in self.employments(contact_id)):
                self._shred(person_id)

    def _addresses(self, contact_id: UUID) -> set[str]:
        """Every e-mail address a contact ever had, from its history."""
        found: set[str] = set()
        for event in self._events(contact_id):
            values = vars(event).get("changes", vars(event))
            for name in EMAIL_DETAILS:
                value = values.get(name)
                if value and value != ERASED:
                    found.add(value)
        return found

    def _shred(self, person_id: UUID) -> None:
        self.cipher.keys.erase(person_id)
        self.cipher.forget(person_id)
        self.photos.delete_person(person_id)

    # -------------------------------------------------------------------- reads

    def get_contact(self, contact_id: UUID, version: int | None = None) -> Contact:
        """The contact now, or at a given version."""
        contact = self._load(contact_id)
        if version is not None:
            if version < 1 or version > contact.version:
                raise ContactNotFoundError(contact_id)
            return self._load(contact_id, version)
        return contact

    def get_contact_as_of(self, contact_id: UUID, at: datetime) -> Contact | None:
        """The contact as it was at a moment; None when it did not exist yet."""
        version = None
        for event in self._events(contact_id):
            if event.timestamp > at:
                break
            version = event.originator_version
        if version is None:
            self._load(contact_id)  # a 404 for an unknown id, not "did not exist yet"
            return None
        return self._load(contact_id, version)

    def _events(self, contact_id: UUID) -> Iterator[Any]:
        return iter(self.events.get(contact_id))

    def history(self, contact_id: UUID) -> list[dict[str, Any]]:
        """Every event of a contact: type, who, when, and what changed."""
        entries: list[dict[str, Any]] = []
        contact: Contact | None = None
        for event in self._events(contact_id):
            before = contact.state() if contact is not None else {}
            contact = event.mutate(contact)
            after = contact.state() if contact is not None else {}
            changes = {
                k: {"old": before.get(k), "new": v}
                for k, v in after.items()
                if k not in ("version", "modified_on") and before.get(k) != v
            }
            entries.append(
                {
                    "version": event.originator_version,
                    "type": event_type_name(event),
                    "occurred_at": event.timestamp,
                    "actor": event.actor,
                    "correlation_id": event.correlation_id,
                    "channel": event.channel,
                    "changes": changes,
                    # What the event said beyond the state it changed (e.g. a reason).
                    "data": {
                        k: v
                        for k, v in vars(event).items()
                        if k not in _ENVELOPE_FIELDS and not isinstance(event, Contact.Created)
                    },
                }
            )
        if contact is None:
            raise ContactNotFoundError(contact_id)
        return entries

    def _members(self, keys: dict[str, str], of: UUID | None = None) -> dict[UUID, list[str]]:
        """The current contacts sharing any of the near-duplicate keys: {id: rules}."""
        matched: dict[UUID, list[str]] = {}
        for material, rule in keys.items():
            key: object = None
            try:
                key = self.repository.get(self.key_id(material))
            except AggregateNotFoundError:
                continue
            if isinstance(key, NearKey):
                members: set[UUID] = key.members
                for member in sorted(members - {of} if of else members):
                    matched.setdefault(member, []).append(rule)
        return matched

    def possible_duplicates(self, contact_id: UUID) -> list[NearDuplicate]:
        """The current contacts at the contact's company that may be the same person."""
        contact = self._load(contact_id)
        contact.check_version(None)  # an erased person has no look-alikes to show
        matched = self._members(near_keys(contact), of=contact.id)
        return self._near_duplicates(matched, set(contact.distinct_from), of=contact.id)

    def possible_duplicates_of(
        self,
        company_id: UUID,
        first_names: str | None,
        last_names: str | None,
        phones: tuple[str | None, ...] = (),
    ) -> list[NearDuplicate]:
        """The current contacts at a company a contact with these values would look like."""
        keys = near_keys(
            company_id=company_id, first_names=first_names, last_names=last_names, phones=phones
        )
        return self._near_duplicates(self._members(keys), set())

    def backfill_near_keys(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Join the near-duplicate keys of every current contact (those stored before them).

        Idempotent: a member joins nothing again. Returns how many contacts it looked at;
        stops early when stop() says so.
        """
        seen, start = 0, 1
        while not stop():
            page = self.recorder.select_notifications(start, 500, topics=(Contact.Created.TOPIC,))
            if not page:
                break
            for notification in page:
                self._join_near_keys(UUID(str(notification.originator_id)))
                seen += 1
            start = page[-1].id + 1
        return seen

    def backfill_infotags(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Define catalogue tags (and their parents) for every name placed before the catalogue.

        Each under the deterministic id of its name path, so those placements are the
        catalogue tag's (removable by its id). Idempotent; returns how many names were new.
        """
        names: set[str] = set()
        start = 1
        topics = (Contact.InfotagAdded.TOPIC, Contact.Created.TOPIC)
        while not stop():
            page = self.recorder.select_notifications(start, 500, topics=topics)
            if not page:
                break
            for notification in page:
                event: Any = self.mapper.to_domain_event(notification)
                if isinstance(event, Contact.InfotagAdded):
                    if event.tag_id is None:
                        names.add(event.tag)
                else:  # a job change's new version carries the placements over
                    names.update(t for t, p in event.infotags.items() if "tag_id" not in p)
            start = page[-1].id + 1
        if stop() or not names:
            return 0
        actor = Actor("system", "infotag-catalogue-backfill")

        def define(catalogue: InfotagCatalogue) -> int:
            new = 0
            for name in sorted(names):
                if catalogue.find_path(name) is None:
                    try:
                        catalogue.define_path(actor, name)
                        new += 1
                    except ContactError:
                        pass  # a name the catalogue cannot hold (too long): stays a name
            return new

        return self._save_catalogue(actor, define)

    def _join_near_keys(self, contact_id: UUID) -> None:
        def attempt(optimistic: bool) -> None:
            contact = self._load(contact_id)
            keys = self._key_events([(contact.id, {}, near_keys(contact))])
            if keys:
                self.save(*keys)

        self._retrying(attempt)

    def employments(self, contact_id: UUID) -> list[Contact]:
        """All versions of the contact's person, oldest first (withdrawn ones after theirs)."""
        first = self._load(contact_id)
        while first.predecessor_id is not None:
            first = self._load(first.predecessor_id)
        chain: list[Contact] = []
        version: Contact | None = first
        while version is not None:
            chain.append(version)
            chain.extend(self._load(withdrawn) for withdrawn in version.withdrawn_ids)
            version = self._load(version.successor_id) if version.successor_id else None
        return chain
