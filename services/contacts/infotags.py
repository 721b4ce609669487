"""The infotag catalogue for contacts: one aggregate holding the whole tag tree (pure).

One aggregate, because the catalogue is small and rarely changed: sibling-name
uniqueness and the no-cycle rule are then checked atomically under the event
store's optimistic concurrency. Names are compared NFKC-normalised and
casefolded (`VIP` and `vip` are one name; `Sølv` and `Solv` are two, unlike the
Danish folding that name search uses).
"""

from __future__ import annotations

import unicodedata
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from services.contacts.domain import Actor, ContactError
from shared.auth import ADMIN_ROLE
from shared.contract.infotags import (
    CATALOGUE_ID,
    PATH_SEPARATOR,
    name_key,
    split_path,
    tag_id_for_path,
)

#: The longest tag name accepted.
MAX_NAME_LENGTH = 100

# --------------------------------------------------------------------------- errors


class AdminRequiredError(ContactError):
    """Only a user with the admin role may change the infotag catalogue."""

    def __init__(self) -> None:
        super().__init__(f"changing the infotag catalogue needs the {ADMIN_ROLE!r} role")


class InfotagNotFoundError(ContactError):
    """No catalogue tag has the given id."""

    def __init__(self, tag_id: UUID) -> None:
        super().__init__(f"infotag {tag_id} is not in the catalogue")
        self.tag_id = tag_id


class InfotagNameTakenError(ContactError):
    """A sibling under the same parent already has this name (compared case-insensitively)."""

    def __init__(self, name: str, existing_id: UUID) -> None:
        super().__init__(f"a sibling infotag is already named {name!r}: {existing_id}")
        self.name = name
        self.existing_id = existing_id


class InfotagCycleError(ContactError):
    """A tag cannot be moved under itself or one of its descendants."""

    def __init__(self, tag_id: UUID, parent_id: UUID) -> None:
        super().__init__(f"infotag {tag_id} cannot move under its own descendant {parent_id}")


class InactiveInfotagError(ContactError):
    """An inactive tag can be searched for but not placed, nor given new children."""

    def __init__(self, tag_id: UUID) -> None:
        super().__init__(f"infotag {tag_id} is inactive")
        self.tag_id = tag_id


class InvalidInfotagNameError(ContactError, ValueError):
    """A tag name is empty, too long, or contains the path separator."""


# --------------------------------------------------------------------------- rules


def clean_name(name: str) -> str:
    """The name as stored (NFC, outer whitespace stripped); refuses names breaking the rules."""
    cleaned = " ".join(unicodedata.normalize("NFC", name).split())
    if not cleaned:
        raise InvalidInfotagNameError("an infotag name cannot be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidInfotagNameError(f"an infotag name has at most {MAX_NAME_LENGTH} characters")
    # A path names a tag through its ancestors, so the separator cannot be part of a name.
    if PATH_SEPARATOR in cleaned:
        raise InvalidInfotagNameError(
            f"an infotag name cannot contain {PATH_SEPARATOR!r}: define the parent instead"
        )
    return cleaned


def require_admin(roles: frozenset[str] | set[str]) -> None:
    """Refuse a caller without the admin role."""
    if ADMIN_ROLE not in roles:
        raise AdminRequiredError


# --------------------------------------------------------------------------- aggregate


class InfotagCatalogue(Aggregate):
    """The tree of contact infotags: each tag a name, a parent and whether it is active."""

    # An explicit topic registers the events' explicit topics when the class is made, so
    # a process that only reads them (the relay, a restarted API) can decode them.
    TOPIC = "kontakt:InfotagCatalogue"

    class Event(Aggregate.Event):
        """Every catalogue event records the actor and the correlation id."""

        actor: str
        correlation_id: str

    class Created(Event, Aggregate.Created):
        """InfotagCatalogueCreated: the empty catalogue."""

        TOPIC = "kontakt:InfotagCatalogueCreated"

    class Defined(Event):
        """InfotagDefined: a new tag under a parent (or at the root)."""

        TOPIC = "kontakt:InfotagDefined"
        tag_id: UUID
        name: str
        parent_id: UUID | None

        def apply(self, aggregate: InfotagCatalogue) -> None:
            aggregate.tags[self.tag_id] = {
                "name": self.name,
                "parent_id": self.parent_id,
                "active": True,
                "defined_by": self.actor,
                "defined_at": self.timestamp.isoformat(),
            }

    class Renamed(Event):
        """InfotagRenamed: the tag now has this name."""

        TOPIC = "kontakt:InfotagRenamed"
        tag_id: UUID
        name: str

        def apply(self, aggregate: InfotagCatalogue) -> None:
            aggregate.tags[self.tag_id]["name"] = self.name

    class Moved(Event):
        """InfotagMoved: the tag (with its descendants) now sits under this parent."""

        TOPIC = "kontakt:InfotagMoved"
        tag_id: UUID
        parent_id: UUID | None

        def apply(self, aggregate: InfotagCatalogue) -> None:
            aggregate.tags[self.tag_id]["parent_id"] = self.parent_id

    class Deactivated(Event):
        """InfotagDeactivated: the tag refuses new placements; placed ones stay."""

        TOPIC = "kontakt:InfotagDeactivated"
        tag_id: UUID

        def apply(self, aggregate: InfotagCatalogue) -> None:
            aggregate.tags[self.tag_id]["active"] = False

    class Reactivated(Event):
        """InfotagReactivated: the tag can be placed again."""

        TOPIC = "kontakt:InfotagReactivated"
        tag_id: UUID

        def apply(self, aggregate: InfotagCatalogue) -> None:
            aggregate.tags[self.tag_id]["active"] = True

    def __init__(self, *, actor: str, correlation_id: str) -> None:
        self.created_by = actor
        self.tags: dict[UUID, dict[str, Any]] = {}

    @classmethod
    def create(cls, actor: Actor) -> InfotagCatalogue:
        """The empty catalogue, under its fixed id."""
        return cls._create(
            cls.Created, id=CATALOGUE_ID, actor=actor.user_id, correlation_id=actor.correlation_id
        )

    # ---------------------------------------------------------------- queries

    def tag(self, tag_id: UUID) -> dict[str, Any]:
        """The tag's state; InfotagNotFoundError when unknown."""
        try:
            return self.tags[tag_id]
        except KeyError:
            raise InfotagNotFoundError(tag_id) from None

    def path(self, tag_id: UUID) -> str:
        """The tag's names from the root down, joined by `/` (`Kunde/Guld`)."""
        names: list[str] = []
        current: UUID | None = tag_id
        while current is not None:
            state = self.tag(current)
            names.append(state["name"])
            current = state["parent_id"]
        return PATH_SEPARATOR.join(reversed(names))

    def ancestors(self, tag_id: UUID) -> list[UUID]:
        """The tag's parent, its parent's parent, ... up to the root."""
        found: list[UUID] = []
        current = self.tag(tag_id)["parent_id"]
        while current is not None:
            found.append(current)
            current = self.tag(current)["parent_id"]
        return found

    def descendants(self, tag_id: UUID) -> set[UUID]:
        """Every tag below this one."""
        self.tag(tag_id)
        return {other for other in self.tags if tag_id in self.ancestors(other)}

    def find_path(self, path: str) -> UUID | None:
        """The id of the tag at this path (names compared case-insensitively), or None."""
        parent: UUID | None = None
        for part in split_path(path) or [""]:
            parent = self._sibling_named(parent, part)
            if parent is None:
                return None
        return parent

    def require_placeable(self, tag_id: UUID) -> None:
        """Refuse placing an unknown or inactive tag."""
        if not self.tag(tag_id)["active"]:
            raise InactiveInfotagError(tag_id)

    def _sibling_named(self, parent_id: UUID | None, name: str) -> UUID | None:
        key = name_key(name)
        for other, state in self.tags.items():
            if state["parent_id"] == parent_id and name_key(state["name"]) == key:
                return other
        return None

    def _check_free(self, parent_id: UUID | None, name: str, tag_id: UUID | None) -> None:
        existing = self._sibling_named(parent_id, name)
        if existing is not None and existing != tag_id:
            raise InfotagNameTakenError(name, existing)

    def _check_parent(self, parent_id: UUID | None) -> None:
        if parent_id is not None and not self.tag(parent_id)["active"]:
            raise InactiveInfotagError(parent_id)

    def _trigger(self, event_class: type[InfotagCatalogue.Event], actor: Actor, **kw: Any) -> None:
        self.trigger_event(
            event_class, actor=actor.user_id, correlation_id=actor.correlation_id, **kw
        )

    # ---------------------------------------------------------------- commands

    def define(self, actor: Actor, *, tag_id: UUID, name: str, parent_id: UUID | None) -> UUID:
        """Define a tag under a parent (None: at the root); its name free among its siblings."""
        name = clean_name(name)
        if tag_id in self.tags:
            raise InfotagNameTakenError(name, tag_id)
        self._check_parent(parent_id)
        self._check_free(parent_id, name, None)
        self._trigger(self.Defined, actor, tag_id=tag_id, name=name, parent_id=parent_id)
        return tag_id

    def define_path(self, actor: Actor, path: str) -> UUID:
        """The tag at this path, defining it and missing parents under deterministic ids."""
        parent: UUID | None = None
        names = split_path(path)
        if not names:
            raise InvalidInfotagNameError("an infotag path cannot be empty")
        for depth, name in enumerate(names, start=1):
            existing = self._sibling_named(parent, name)
            if existing is None:
                tag_id = tag_id_for_path(PATH_SEPARATOR.join(names[:depth]))
                # A tag defined by hand may already hold the deterministic id elsewhere.
                if tag_id in self.tags:
                    raise InfotagNameTakenError(name, tag_id)
                self._trigger(
                    self.Defined, actor, tag_id=tag_id, name=clean_name(name), parent_id=parent
                )
                existing = tag_id
            parent = existing
        assert parent is not None  # names is not empty
        return parent

    def rename(self, actor: Actor, tag_id: UUID, name: str) -> bool:
        """Rename a tag; False when it already has exactly this name."""
        state = self.tag(tag_id)
        name = clean_name(name)
        if state["name"] == name:
            return False
        self._check_free(state["parent_id"], name, tag_id)
        self._trigger(self.Renamed, actor, tag_id=tag_id, name=name)
        return True

    def move(self, actor: Actor, tag_id: UUID, parent_id: UUID | None) -> bool:
        """Move a tag under another parent (None: to the root); False when it is there already."""
        state = self.tag(tag_id)
        if state["parent_id"] == parent_id:
            return False
        if parent_id is not None and (parent_id == tag_id or tag_id in self.ancestors(parent_id)):
            raise InfotagCycleError(tag_id, parent_id)
        self._check_parent(parent_id)
        self._check_free(parent_id, state["name"], tag_id)
        self._trigger(self.Moved, actor, tag_id=tag_id, parent_id=parent_id)
        return True

    def deactivate(self, actor: Actor, tag_id: UUID) -> bool:
        """Deactivate a tag; False when it already is inactive."""
        if not self.tag(tag_id)["active"]:
            return False
        self._trigger(self.Deactivated, actor, tag_id=tag_id)
        return True

    def reactivate(self, actor: Actor, tag_id: UUID) -> bool:
        """Reactivate a tag; False when it already is active."""
        if self.tag(tag_id)["active"]:
            return False
        self._trigger(self.Reactivated, actor, tag_id=tag_id)
        return True


def upcast_placement_v1(state: dict[str, Any]) -> dict[str, Any]:
    """A stored InfotagAdded/Removed v1 (`tag`: a name path) as v2 (`tag_id` of the catalogue)."""
    upcast = {k: v for k, v in state.items() if k != "tag"}
    upcast["tag_id"] = tag_id_for_path(state["tag"])
    return upcast
