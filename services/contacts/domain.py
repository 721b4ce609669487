"""The contact domain: the Contact aggregate, its past-tense events and named errors.

Pure: no I/O, no framework. The application layer loads, calls and saves.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from shared.addresses import normalise_address
from shared.contract import contacts as contract

# What personal data reads as once the person was erased: the same in the contract.
from shared.contract.contacts import ERASED, ContactStatus
from shared.folding import fold_name, phone_key
from shared.text import strip_invisible

# --------------------------------------------------------------------------- errors


class ContactError(Exception):
    """Base class of the named domain errors."""


class ContactNotFoundError(ContactError):
    """No contact has the given id."""

    def __init__(self, contact_id: UUID) -> None:
        super().__init__(f"contact {contact_id} not found")
        self.contact_id = contact_id


class VersionConflictError(ContactError):
    """The client's expected version is not the contact's current version."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"contact is at version {actual}, not the expected {expected}")
        self.expected = expected
        self.actual = actual


class ConcurrentModificationError(ContactError):
    """Other writers kept changing the same contact while this command ran."""

    def __init__(self, attempts: int) -> None:
        super().__init__(f"the contact kept changing under {attempts} attempts; try again")


class ContactErasedError(ContactError):
    """The person was erased: the contact refuses every command."""

    def __init__(self) -> None:
        super().__init__("this person's data was erased; the contact accepts no more changes")


class ContactArchivedError(ContactError):
    """An archived contact refuses edits until it is restored."""

    def __init__(self) -> None:
        super().__init__("contact is archived; restore it before changing it")


class ContactNotArchivedError(ContactError):
    """Only an archived contact can be restored."""

    def __init__(self) -> None:
        super().__init__("contact is not archived")


class FormerEmploymentError(ContactError):
    """A former employment is history: it cannot change job again or be edited."""

    def __init__(self, successor_id: UUID | None) -> None:
        super().__init__(
            f"contact is a former employment (the person's current version is {successor_id});"
            " it cannot be changed"
        )
        self.successor_id = successor_id


class ContactWithdrawnError(ContactError):
    """A version made by a job change that was undone accepts no more changes."""

    def __init__(self, predecessor_id: UUID | None) -> None:
        super().__init__(
            f"contact was withdrawn (its job change was undone; the person's current version"
            f" is {predecessor_id}); it cannot be changed"
        )
        self.predecessor_id = predecessor_id


class NotAJobChangeError(ContactError):
    """Only a current version a job change created can have that job change undone."""

    def __init__(self) -> None:
        super().__init__("contact was not created by a job change: there is none to undo")


class DuplicateContactError(ContactError):
    """A uniqueness key is held by another current contact."""

    def __init__(self, field: str, existing_id: UUID) -> None:
        super().__init__(f"another current contact already has this {field}: {existing_id}")
        self.field = field
        self.existing_id = existing_id


@dataclass(frozen=True)
class NearDuplicate:
    """A current contact the new or renamed one may be, and which rules matched."""

    contact_id: UUID
    first_names: str
    last_names: str
    matched: tuple[str, ...]
    #: One of the two said they are different people (distinct_from).
    declared_distinct: bool = False


class PossibleDuplicateError(ContactError):
    """The contact would be a near duplicate of current contacts at the same company."""

    code = "possible_duplicate"

    def __init__(self, candidates: list[NearDuplicate]) -> None:
        super().__init__(
            f"possibly the same person as {len(candidates)} current contact(s) at this company;"
            " if this is a different person, send their ids in distinct_from"
        )
        self.candidates = candidates


class InfotagNotPlacedError(ContactError):
    """The infotag to remove is not on the contact."""

    def __init__(self, tag: str) -> None:
        super().__init__(f"infotag {tag!r} is not on this contact")
        self.tag = tag


class NoPhotoError(ContactError):
    """The contact has no photo to remove."""

    def __init__(self) -> None:
        super().__init__("contact has no photo")


class InvalidValueError(ContactError, ValueError):
    """A value breaks a rule the domain checks (e.g. an empty name, a date order)."""


class NothingToChangeError(ContactError):
    """A details change named no field."""

    def __init__(self) -> None:
        super().__init__("no field to change was given")


class SameCompanyJobChangeError(ContactError):
    """A job change to the company the contact is already at: that is a title change."""

    def __init__(self, company_id: UUID) -> None:
        super().__init__(
            f"the contact is already at company {company_id}: change the job title"
            " (PATCH the contact) instead of recording a job change"
        )
        self.company_id = company_id


class NotAMomentError(InvalidValueError):
    """Text that is neither a date nor an ISO timestamp."""

    def __init__(self) -> None:
        super().__init__("not a date or timestamp (e.g. 2026-11-26 or 2026-11-26T12:00)")


# ----------------------------------------------------------------------- value types

#: Fields of a contact a details change may set (the contract defines them).
DETAIL_FIELDS: tuple[str, ...] = contract.DETAIL_FIELDS

#: Personal fields of a contact's state: encrypted in stored events and snapshots.
PERSONAL_STATE: tuple[str, ...] = (*DETAIL_FIELDS, "photo.content_hash")


@dataclass(frozen=True)
class Actor:
    """Who acts, the correlation id of the request that acts, and the channel it came by."""

    user_id: str
    correlation_id: str
    #: Through which channel the change came (the contract's CHANNELS).
    channel: str = contract.DEFAULT_CHANNEL


#: What an event records of a photo; the bytes live in the photo store.
PhotoInfo = contract.PhotoRef


def normalise_text(value: str) -> str:
    """Normalise for comparison: invisible characters ignored, NFKC, case-folded, spaces collapsed.

    Text free of invisible characters normalises as it always did, so uniqueness keys
    claimed before invisibles were ignored keep their key material and still release.
    """
    return legacy_normalise_text(strip_invisible(value))


def legacy_normalise_text(value: str) -> str:
    """Normalise as before invisible characters were ignored: NFKC, case-folded, collapsed."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def normalise_email(value: str) -> str:
    """Normalise an address for uniqueness as shared/addresses.py does, invisibles ignored."""
    return normalise_address(strip_invisible(value))


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """A date (YYYY-MM-DD) or ISO timestamp as an aware moment, UTC unless it says otherwise.

    A date alone is the start of that day (UTC), or its last microsecond with end_of_day.
    """
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise NotAMomentError() from None
    else:
        moment = datetime.combine(day, datetime.max.time() if end_of_day else datetime.min.time())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_of_moment(text: str) -> datetime:
    """What "as of" a date or timestamp means, for every reader: a date is the end of that day.

    So a contact created at any time on a day exists "as of" that day, and the day's last
    change is what it shows.
    """
    return parse_moment(text, end_of_day=True)


# ------------------------------------------------------------------------ aggregate


class Contact(Aggregate):
    """One version of a human at one company."""

    TOPIC = "kontakt:Contact"
    PERSONAL_STATE = PERSONAL_STATE

    class Event(Aggregate.Event):
        """Every contact event records the person, the actor, the correlation id and channel."""

        person_id: UUID
        actor: str
        correlation_id: str
        channel: str

    class Created(Event, Aggregate.Created):
        """ContactCreated: a new contact, or a new version of a person after a job change."""

        TOPIC = "kontakt:ContactCreated"
        PERSONAL = PERSONAL_STATE
        company_id: UUID
        company_name: str
        # The detail fields are the contract's, so a new one needs no edit here.
        __annotations__.update(contract.detail_annotations())
        started_on: date | None
        predecessor_id: UUID | None
        infotags: dict[str, dict[str, Any]]
        outlook_sync_users: list[str]
        photo: dict[str, Any] | None
        #: Contacts the creator said this person is not, though they look alike.
        distinct_from: list[UUID]

        def apply(self, aggregate: Contact) -> None:
            for name in DETAIL_FIELDS:
                setattr(aggregate, name, getattr(self, name))
            aggregate.distinct_from = set(self.distinct_from)

    class DetailsChanged(Event):
        """ContactDetailsChanged: the named fields now hold these values."""

        TOPIC = "kontakt:ContactDetailsChanged"
        PERSONAL = ("changes.*",)
        changes: dict[str, str | None]
        #: Contacts the editor said this person is not, though the change makes them look alike.
        distinct_from: list[UUID]

        def apply(self, aggregate: Contact) -> None:
            for name, value in self.changes.items():
                setattr(aggregate, name, value)
            if self.distinct_from:
                aggregate.distinct_from = aggregate.distinct_from | set(self.distinct_from)

    class JobChanged(Event):
        """JobChanged: this employment ended; the person goes on as the successor."""

        TOPIC = "kontakt:JobChanged"
        ended_on: date
        successor_id: UUID
        new_company_id: UUID
        new_company_name: str

        def apply(self, aggregate: Contact) -> None:
            aggregate.ended_on = self.ended_on
            aggregate.successor_id = self.successor_id

    class EmploymentCorrected(Event):
        """EmploymentCorrected: a typo in the employer or a date of this employment was fixed.

        It records the employment as it now reads (whatever was corrected): no job change.
        """

        TOPIC = "kontakt:EmploymentCorrected"
        company_id: UUID
        company_name: str
        started_on: date | None
        ended_on: date | None

        def apply(self, aggregate: Contact) -> None:
            aggregate.company_id = self.company_id
            aggregate.company_name = self.company_name
            aggregate.started_on = self.started_on
            aggregate.ended_on = self.ended_on

    class JobChangeWithdrawn(Event):
        """JobChangeWithdrawn: the job change that made this version was undone."""

        TOPIC = "kontakt:JobChangeWithdrawn"
        predecessor_id: UUID

        def apply(self, aggregate: Contact) -> None:
            aggregate.withdrawn = True

    class JobChangeUndone(Event):
        """JobChangeUndone: this employment is current again; the successor was withdrawn.

        What followed the person to the successor comes back as the successor had it.
        """

        TOPIC = "kontakt:JobChangeUndone"
        PERSONAL = ("photo.content_hash",)
        withdrawn_id: UUID
        infotags: dict[str, dict[str, Any]]
        outlook_sync_users: list[str]
        photo: dict[str, Any] | None

        def apply(self, aggregate: Contact) -> None:
            aggregate.ended_on = None
            aggregate.successor_id = None
            aggregate.withdrawn_ids = [*aggregate.withdrawn_ids, self.withdrawn_id]
            aggregate.infotags = {k: dict(v) for k, v in self.infotags.items()}
            aggregate.outlook_sync_users = set(self.outlook_sync_users)
            aggregate.photo = dict(self.photo) if self.photo else None

    class OutlookSyncToggled(Event):
        """OutlookSyncToggled: one user's switch for this contact was turned on or off."""

        TOPIC = "kontakt:OutlookSyncToggled"
        PERSONAL = ("reason",)
        user_id: str
        enabled: bool
        reason: str | None

        def apply(self, aggregate: Contact) -> None:
            if self.enabled:
                aggregate.outlook_sync_users.add(self.user_id)
            else:
                aggregate.outlook_sync_users.discard(self.user_id)

    class InfotagAdded(Event):
        """InfotagAdded: a tag was placed on the contact."""

        TOPIC = "kontakt:InfotagAdded"
        tag: str
        # The catalogue tag placed; None in placements by name made before the catalogue.
        tag_id: UUID | None = None

        def apply(self, aggregate: Contact) -> None:
            placed = {"added_by": self.actor, "added_at": self.timestamp.isoformat()}
            if self.tag_id is not None:
                placed["tag_id"] = str(self.tag_id)
            aggregate.infotags[self.tag] = placed

    class InfotagRemoved(Event):
        """InfotagRemoved: a tag was taken off the contact."""

        TOPIC = "kontakt:InfotagRemoved"
        tag: str
        tag_id: UUID | None = None

        def apply(self, aggregate: Contact) -> None:
            aggregate.infotags.pop(self.tag, None)

    class PhotoChanged(Event):
        """PhotoChanged: the contact has a new current photo."""

        TOPIC = "kontakt:PhotoChanged"
        PERSONAL = ("content_hash",)
        __annotations__ = {n: f.annotation for n, f in PhotoInfo.model_fields.items()}

        def apply(self, aggregate: Contact) -> None:
            aggregate.photo = {name: getattr(self, name) for name in PhotoInfo.model_fields}

    class PhotoRemoved(Event):
        """PhotoRemoved: the contact has no photo any more."""

        TOPIC = "kontakt:PhotoRemoved"

        def apply(self, aggregate: Contact) -> None:
            aggregate.photo = None

    class Archived(Event):
        """ContactArchived: soft-deleted; refuses edits until restored."""

        TOPIC = "kontakt:ContactArchived"
        PERSONAL = ("reason",)
        reason: str | None

        def apply(self, aggregate: Contact) -> None:
            aggregate.archived = True

    class Restored(Event):
        """ContactRestored: back from the archive."""

        TOPIC = "kontakt:ContactRestored"

        def apply(self, aggregate: Contact) -> None:
            aggregate.archived = False

    class Erased(Event):
        """ContactErased: the person's personal data was erased (right to be forgotten).

        The reason stays readable after the erasure, so it must name no personal data.
        """

        TOPIC = "kontakt:ContactErased"
        reason: str | None
        #: Keyed hashes of every address the person had, so read models can forget
        #: them (and refuse them in activities arriving later) without keeping them.
        address_hashes: list[str]

        def apply(self, aggregate: Contact) -> None:
            aggregate.erased = True
            for name in PERSONAL_STATE:
                if "." not in name:
                    setattr(aggregate, name, ERASED)
            aggregate.photo = None
            aggregate.outlook_sync_users.clear()

    def __init__(
        self,
        *,
        person_id: UUID,
        actor: str,
        correlation_id: str,
        company_id: UUID,
        company_name: str,
        started_on: date | None,
        predecessor_id: UUID | None,
        infotags: dict[str, dict[str, Any]],
        outlook_sync_users: list[str],
        photo: dict[str, Any] | None,
    ) -> None:
        # The detail fields are set by Created.apply, from the contract's list.
        self.person_id = person_id
        self.created_by = actor
        self.company_id = company_id
        self.company_name = company_name
        self.started_on = started_on
        self.predecessor_id = predecessor_id
        self.infotags: dict[str, dict[str, Any]] = {k: dict(v) for k, v in infotags.items()}
        self.outlook_sync_users: set[str] = set(outlook_sync_users)
        self.photo: dict[str, Any] | None = dict(photo) if photo else None
        self.ended_on: date | None = None
        self.successor_id: UUID | None = None
        self.archived = False
        self.erased = False
        self.withdrawn = False
        #: Successors withdrawn when a job change of this version was undone, oldest first.
        self.withdrawn_ids: list[UUID] = []
        # Set by Created.apply; contacts the person was declared not to be.
        self.distinct_from: set[UUID] = set()

    # ---------------------------------------------------------------- factories

    @classmethod
    def create(
        cls,
        *,
        contact_id: UUID,
        person_id: UUID,
        actor: Actor,
        company_id: UUID,
        company_name: str,
        details: dict[str, str | None],
        started_on: date | None = None,
        distinct_from: list[UUID] | None = None,
    ) -> Contact:
        """Create the first version of a person at a company."""
        return cls._create(
            cls.Created,
            id=contact_id,
            person_id=person_id,
            actor=actor.user_id,
            correlation_id=actor.correlation_id,
            channel=actor.channel,
            company_id=company_id,
            company_name=company_name,
            **{name: details.get(name) for name in DETAIL_FIELDS},
            started_on=started_on,
            predecessor_id=None,
            infotags={},
            outlook_sync_users=[],
            photo=None,
            distinct_from=sorted(set(distinct_from or ())),
        )

    # ------------------------------------------------------------------ queries

    if TYPE_CHECKING:
        # The detail fields (the contract's) are set by name, so checkers cannot list them.
        def __getattr__(self, name: str) -> Any: ...

    @property
    def is_former(self) -> bool:
        """True when the person has moved on to a successor version."""
        return self.successor_id is not None

    @property
    def status(self) -> ContactStatus:
        """current, former, archived, erased or withdrawn."""
        return contract.contact_status(
            erased=self.erased,
            former=self.is_former,
            archived=self.archived,
            withdrawn=self.withdrawn,
        )

    @property
    def is_current(self) -> bool:
        """True for a contact that holds uniqueness keys (not archived, not former)."""
        return self.status == "current"

    def details(self) -> dict[str, str | None]:
        """The editable detail fields."""
        return {name: getattr(self, name) for name in DETAIL_FIELDS}

    def state(self) -> dict[str, Any]:
        """The whole state as plain data, for reads and history diffs."""
        return {
            "id": self.id,
            "person_id": self.person_id,
            "version": self.version,
            "status": self.status,
            "company_id": self.company_id,
            "company_name": self.company_name,
            **self.details(),
            "started_on": self.started_on,
            "ended_on": self.ended_on,
            "predecessor_id": self.predecessor_id,
            "successor_id": self.successor_id,
            "archived": self.archived,
            "erased": self.erased,
            "withdrawn": self.withdrawn,
            "infotags": [{"tag": tag, **placed} for tag, placed in sorted(self.infotags.items())],
            "outlook_sync_users": sorted(self.outlook_sync_users),
            "photo": dict(self.photo) if self.photo else None,
            "created_on": self.created_on,
            "modified_on": self.modified_on,
        }

    # ---------------------------------------------------------------- commands

    def _check_not_erased(self) -> None:
        if self.erased:
            raise ContactErasedError()

    def check_editable(self) -> None:
        """Refuse when the contact is erased, withdrawn, former or archived."""
        self._check_not_erased()
        if self.withdrawn:
            raise ContactWithdrawnError(self.predecessor_id)
        if self.is_former:
            raise FormerEmploymentError(self.successor_id)
        if self.archived:
            raise ContactArchivedError()

    def _trigger(self, event_class: type[Contact.Event], actor: Actor, **kwargs: Any) -> None:
        self.trigger_event(
            event_class,
            person_id=self.person_id,
            actor=actor.user_id,
            correlation_id=actor.correlation_id,
            channel=actor.channel,
            **kwargs,
        )

    def check_version(self, expected: int | None) -> None:
        """Refuse when the client saw another version than the current one."""
        self._check_not_erased()
        if expected is not None and expected != self.version:
            raise VersionConflictError(expected, self.version)

    def change_details(
        self,
        actor: Actor,
        changes: dict[str, str | None],
        distinct_from: list[UUID] | None = None,
    ) -> bool:
        """Record the fields whose values differ; False when nothing differs."""
        self.check_editable()
        unknown = set(changes) - set(DETAIL_FIELDS)
        if unknown:
            raise InvalidValueError(f"not a detail field: {sorted(unknown)}")
        if not changes:
            raise NothingToChangeError()
        for required in contract.REQUIRED_DETAILS:
            if required in changes and not (changes[required] or "").strip():
                raise InvalidValueError(f"{required} cannot be empty")
        differing = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if not differing:
            return False
        self._trigger(
            self.DetailsChanged,
            actor,
            changes=differing,
            distinct_from=sorted(set(distinct_from or ())),
        )
        return True

    def change_job(
        self,
        actor: Actor,
        *,
        successor_id: UUID,
        company_id: UUID,
        company_name: str,
        job: dict[str, str | None],
        effective_on: date,
    ) -> Contact:
        """End this employment and return the person's new version at the new company."""
        self.check_editable()
        if company_id == self.company_id:
            raise SameCompanyJobChangeError(company_id)
        if self.started_on is not None and effective_on < self.started_on:
            raise InvalidValueError(
                f"effective_on {effective_on} is before this employment started ({self.started_on})"
            )
        self._trigger(
            self.JobChanged,
            actor,
            ended_on=effective_on,
            successor_id=successor_id,
            new_company_id=company_id,
            new_company_name=company_name,
        )
        # Personal data, infotags, sync switches and the photo follow the person;
        # work contact data and title are those of the new job.
        return Contact._create(
            Contact.Created,
            id=successor_id,
            person_id=self.person_id,
            actor=actor.user_id,
            correlation_id=actor.correlation_id,
            channel=actor.channel,
            company_id=company_id,
            company_name=company_name,
            **{name: getattr(self, name) for name in contract.PERSONAL_DETAILS},
            **{name: job.get(name) for name in contract.JOB_DETAILS},
            started_on=effective_on,
            predecessor_id=self.id,
            infotags={k: dict(v) for k, v in self.infotags.items()},
            outlook_sync_users=sorted(self.outlook_sync_users),
            photo=dict(self.photo) if self.photo else None,
            distinct_from=sorted(self.distinct_from),
        )

    def withdraw_job_change(self, actor: Actor) -> None:
        """Withdraw this version: the job change that created it was a mistake."""
        self.check_editable()
        if self.predecessor_id is None:
            raise NotAJobChangeError()
        self._trigger(self.JobChangeWithdrawn, actor, predecessor_id=self.predecessor_id)

    def undo_job_change(self, actor: Actor, successor: Contact) -> None:
        """Be current again after the successor was withdrawn, taking what it carries now.

        The infotags, Outlook switches and photo the successor has (carried over at the job
        change and maybe changed since) become this version's; its details stay its own.
        """
        self._check_not_erased()
        if self.successor_id != successor.id or not successor.withdrawn:
            raise NotAJobChangeError()
        self._trigger(
            self.JobChangeUndone,
            actor,
            withdrawn_id=successor.id,
            infotags={k: dict(v) for k, v in successor.infotags.items()},
            outlook_sync_users=sorted(successor.outlook_sync_users),
            photo=dict(successor.photo) if successor.photo else None,
        )

    def correct_employment(
        self,
        actor: Actor,
        *,
        company_id: UUID | None = None,
        company_name: str | None = None,
        started_on: date | None = None,
        ended_on: date | None = None,
    ) -> bool:
        """Correct the employer's id or name, or a date, of this employment, current or former.

        Only what is given is corrected; False when it already reads so. An end date
        belongs to a former employment only, and no employment ends before it started.
        """
        self._check_not_erased()
        if self.withdrawn:
            raise ContactWithdrawnError(self.predecessor_id)
        if self.archived:
            raise ContactArchivedError()
        if company_id is None and company_name is None and started_on is None and ended_on is None:
            raise NothingToChangeError()
        if ended_on is not None and not self.is_former:
            raise InvalidValueError("only a former employment has an end date to correct")
        start: date | None = self.started_on if started_on is None else started_on
        end: date | None = self.ended_on if ended_on is None else ended_on
        corrected: dict[str, Any] = {
            "company_id": self.company_id if company_id is None else company_id,
            "company_name": self.company_name if company_name is None else company_name,
            "started_on": start,
            "ended_on": end,
        }
        if start is not None and end is not None and end < start:
            raise InvalidValueError(f"the employment would end ({end}) before it started ({start})")
        if all(getattr(self, name) == value for name, value in corrected.items()):
            return False
        self._trigger(self.EmploymentCorrected, actor, **corrected)
        return True

    def toggle_outlook_sync(
        self, actor: Actor, *, user_id: str, enabled: bool, reason: str | None = None
    ) -> bool:
        """Switch one user's Outlook sync; False when it already was so."""
        self.check_editable()
        if (user_id in self.outlook_sync_users) == enabled:
            return False
        self._trigger(
            self.OutlookSyncToggled, actor, user_id=user_id, enabled=enabled, reason=reason
        )
        return True

    def add_infotag(self, actor: Actor, tag: str) -> bool:
        """Place a tag; False when it is already placed."""
        self.check_editable()
        if tag in self.infotags:
            return False
        self._trigger(self.InfotagAdded, actor, tag=tag)
        return True

    def remove_infotag(self, actor: Actor, tag: str) -> None:
        """Take a placed tag off."""
        self.check_editable()
        if tag not in self.infotags:
            raise InfotagNotPlacedError(tag)
        self._trigger(self.InfotagRemoved, actor, tag=tag)

    def placed_as(self, tag_id: UUID, id_of_name: Callable[[str], UUID]) -> str | None:
        """The placement (its name path) of a catalogue tag, or None when it is not placed.

        Placements by name made before the catalogue carry no id: id_of_name gives theirs.
        """
        for tag, placed in self.infotags.items():
            placed_id = UUID(placed["tag_id"]) if "tag_id" in placed else id_of_name(tag)
            if placed_id == tag_id:
                return tag
        return None

    def add_catalogue_infotag(self, actor: Actor, tag_id: UUID, path: str, placed: bool) -> bool:
        """Place a catalogue tag under its current path; False when it is already placed."""
        self.check_editable()
        if placed:
            return False
        self._trigger(self.InfotagAdded, actor, tag=path, tag_id=tag_id)
        return True

    def remove_catalogue_infotag(self, actor: Actor, tag_id: UUID, tag: str | None) -> None:
        """Take a placed catalogue tag (placed as `tag`) off."""
        self.check_editable()
        if tag is None or tag not in self.infotags:
            raise InfotagNotPlacedError(str(tag_id))
        self._trigger(self.InfotagRemoved, actor, tag=tag, tag_id=tag_id)

    def change_photo(self, actor: Actor, photo: PhotoInfo) -> bool:
        """Make a stored photo the current one; False when it already is."""
        self.check_editable()
        if self.photo and self.photo["content_hash"] == photo.content_hash:
            return False
        self._trigger(self.PhotoChanged, actor, **photo.model_dump())
        return True

    def remove_photo(self, actor: Actor) -> None:
        """Remove the current photo."""
        self.check_editable()
        if self.photo is None:
            raise NoPhotoError()
        self._trigger(self.PhotoRemoved, actor)

    def archive(self, actor: Actor, reason: str | None = None) -> bool:
        """Soft-delete; False when already archived."""
        self._check_not_erased()
        if self.withdrawn:
            raise ContactWithdrawnError(self.predecessor_id)
        if self.is_former:
            raise FormerEmploymentError(self.successor_id)
        if self.archived:
            return False
        self._trigger(self.Archived, actor, reason=reason)
        return True

    def restore(self, actor: Actor) -> None:
        """Bring an archived contact back."""
        self._check_not_erased()
        if self.withdrawn:
            raise ContactWithdrawnError(self.predecessor_id)
        if self.is_former:
            raise FormerEmploymentError(self.successor_id)
        if not self.archived:
            raise ContactNotArchivedError()
        self._trigger(self.Restored, actor)

    def erase(self, actor: Actor, reason: str | None, address_hashes: list[str]) -> None:
        """Record that the person's personal data was erased (any version, any status)."""
        self._check_not_erased()
        self._trigger(self.Erased, actor, reason=reason, address_hashes=sorted(address_hashes))


# Events and snapshots stored before an optional detail field existed lack it: it reads as null.
for _name in DETAIL_FIELDS:
    if _name not in contract.REQUIRED_DETAILS:
        setattr(Contact, _name, None)
        setattr(Contact.Created, _name, None)

# Events stored before the channel was recorded came through the API.
setattr(Contact.Event, "channel", contract.DEFAULT_CHANNEL)  # noqa: B010

# Events and snapshots from before distinct_from existed declared no one distinct.
# The fallbacks are never mutated: every change assigns a new set.
setattr(Contact, "distinct_from", set())  # noqa: B010
# Snapshots from before a job change could be undone knew no withdrawn versions.
setattr(Contact, "withdrawn", False)  # noqa: B010
setattr(Contact, "withdrawn_ids", [])  # noqa: B010
setattr(Contact.Created, "distinct_from", ())  # noqa: B010
setattr(Contact.DetailsChanged, "distinct_from", ())  # noqa: B010


#: Every stored event's topic is "kontakt:" and its public, past-tense name.
_TOPIC_PREFIX = "kontakt:"


def public_name(event_class: type) -> str:
    """The public, past-tense name of an event class (e.g. ContactCreated), from its topic."""
    topic: str = getattr(event_class, "TOPIC", "")
    return (
        topic.removeprefix(_TOPIC_PREFIX)
        if topic.startswith(_TOPIC_PREFIX)
        else event_class.__name__
    )


def event_type_name(event: object) -> str:
    """The public, past-tense name of an event (e.g. ContactCreated)."""
    return public_name(type(event))


#: Every event class of the contact aggregate.
CONTACT_EVENT_CLASSES: tuple[type[Contact.Event], ...] = tuple(
    value
    for value in vars(Contact).values()
    if isinstance(value, type) and issubclass(value, Contact.Event) and value is not Contact.Event
)


# ------------------------------------------------------------------- uniqueness


class UniqueKey(Aggregate):
    """A claim on a uniqueness key (a name at a company, or an e-mail address).

    Its id is a keyed hash of the normalised value, so concurrent claims of the
    same key meet on one aggregate and the store's version check lets exactly
    one of them win.
    """

    TOPIC = "kontakt:UniqueKey"

    class Event(Aggregate.Event):
        """Every key event records the owning contact (or None when released)."""

        owner_id: UUID | None

    class Created(Event, Aggregate.Created):
        """UniqueKeyClaimed for the first time."""

        TOPIC = "kontakt:UniqueKeyCreated"
        field: str

    class Claimed(Event):
        """UniqueKeyClaimed by a contact."""

        TOPIC = "kontakt:UniqueKeyClaimed"

        def apply(self, aggregate: UniqueKey) -> None:
            aggregate.owner_id = self.owner_id

    class Released(Event):
        """UniqueKeyReleased: no current contact holds it."""

        TOPIC = "kontakt:UniqueKeyReleased"

        def apply(self, aggregate: UniqueKey) -> None:
            aggregate.owner_id = None

    def __init__(self, *, owner_id: UUID | None, field: str) -> None:
        self.owner_id = owner_id
        self.field = field

    @classmethod
    def claim_new(cls, key_id: UUID, field: str, owner_id: UUID) -> UniqueKey:
        """A key claimed for the first time."""
        return cls._create(cls.Created, id=key_id, owner_id=owner_id, field=field)

    def claim(self, owner_id: UUID) -> None:
        """Claim the key; refused while another contact holds it."""
        if self.owner_id == owner_id:
            return
        if self.owner_id is not None:
            raise DuplicateContactError(self.field, self.owner_id)
        self.trigger_event(self.Claimed, owner_id=owner_id)

    def release(self, owner_id: UUID) -> None:
        """Release the key if this contact holds it."""
        if self.owner_id == owner_id:
            self.trigger_event(self.Released, owner_id=None)


def uniqueness_keys(contact: Contact) -> dict[str, str]:
    """The keys a contact holds while current: {key material: field name}."""
    if not contact.is_current:
        return {}
    keys: dict[str, str] = {}
    # A name stored with invisible characters (accepted before the edge removed them)
    # holds its old key as well, so a look-alike cannot claim the visible one beside it
    # and the old key is released with it.
    for normalise in (normalise_text, legacy_normalise_text):
        first, last = normalise(contact.first_names), normalise(contact.last_names)
        keys.setdefault(f"name\x1f{contact.company_id}\x1f{first}\x1f{last}", "name")
    for field in contract.EMAIL_DETAILS:
        value = getattr(contact, field)
        if value:
            keys.setdefault("email\x1f" + normalise_email(value), field)
            keys.setdefault("email\x1f" + normalise_address(value), field)
    return keys


# --------------------------------------------------------------- near duplicates

#: Why two contacts at one company may be one person, by the rule's name.
NEAR_DUPLICATE_RULES: dict[str, str] = {
    "name": "first and last names equal after folding (ø/oe/o, å/aa/a, æ/ae, ß/ss, case,"
    " accents, invisible characters)",
    "phone": "the same phone number (compared on its digits, country code optional)",
}


class NearKey(Aggregate):
    """The current contacts of one company that share a near-duplicate key.

    Unlike a uniqueness key it has many members (people declared distinct share it); its id
    is a keyed hash of the folded value, so concurrent joins of one key meet on one
    aggregate and the store's version check makes the later one look again.
    """

    TOPIC = "kontakt:NearKey"

    class Event(Aggregate.Event):
        """Every near-key event names the contact that joined or left."""

        contact_id: UUID

    class Created(Event, Aggregate.Created):
        """NearKeyCreated: the first contact with this key."""

        TOPIC = "kontakt:NearKeyCreated"
        rule: str

    class Joined(Event):
        """NearKeyJoined: a current contact has this key."""

        TOPIC = "kontakt:NearKeyJoined"

        def apply(self, aggregate: NearKey) -> None:
            aggregate.members = aggregate.members | {self.contact_id}

    class Left(Event):
        """NearKeyLeft: the contact no longer has it (renamed, archived, moved on, erased)."""

        TOPIC = "kontakt:NearKeyLeft"

        def apply(self, aggregate: NearKey) -> None:
            aggregate.members = aggregate.members - {self.contact_id}

    def __init__(self, *, contact_id: UUID, rule: str) -> None:
        self.members: set[UUID] = {contact_id}
        self.rule = rule

    @classmethod
    def join_new(cls, key_id: UUID, rule: str, contact_id: UUID) -> NearKey:
        """A key its first contact joins."""
        return cls._create(cls.Created, id=key_id, contact_id=contact_id, rule=rule)

    def join(self, contact_id: UUID) -> None:
        """Add the contact (once)."""
        if contact_id not in self.members:
            self.trigger_event(self.Joined, contact_id=contact_id)

    def leave(self, contact_id: UUID) -> None:
        """Remove the contact if it is a member."""
        if contact_id in self.members:
            self.trigger_event(self.Left, contact_id=contact_id)


def near_keys(
    contact: Contact | None = None,
    *,
    company_id: UUID | None = None,
    first_names: str | None = None,
    last_names: str | None = None,
    phones: tuple[str | None, ...] = (),
) -> dict[str, str]:
    """The near-duplicate keys of a current contact (or of values given): {material: rule}."""
    if contact is not None:
        if not contact.is_current:
            return {}
        company_id, first_names, last_names = (
            contact.company_id,
            contact.first_names,
            contact.last_names,
        )
        phones = tuple(getattr(contact, f) for f in contract.PHONE_DETAILS)
    keys: dict[str, str] = {}
    if first_names and last_names:
        # Folded as the search folds them, invisible characters ignored as uniqueness does.
        first, last = (fold_name(strip_invisible(n)) for n in (first_names, last_names))
        folded = f"{first}\x1f{last}"
        keys[f"near-name\x1f{company_id}\x1f{folded}"] = "name"
    for phone in phones:
        digits = phone_key(phone) if phone else ""
        if digits:
            keys[f"near-phone\x1f{company_id}\x1f{digits}"] = "phone"
    return keys
