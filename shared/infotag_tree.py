"""The infotag catalogue as a consumer folds it from `infotags.events`: names, parents, paths."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from shared.contract.infotags import PATH_SEPARATOR


class UnknownInfotagError(LookupError):
    """A change to a catalogue tag whose definition never arrived (a message failure)."""


@dataclass(frozen=True)
class TagNode:
    """What a consumer keeps of a catalogue tag to know its path."""

    name: str
    parent_id: UUID | None


def path_of(tags: Mapping[UUID, TagNode], tag_id: UUID) -> str | None:
    """The tag's current path (`Kunde/Guld`); None when the tag is unknown.

    An ancestor not known (yet) ends the path there; a loop (which the catalogue
    refuses, so only damaged data has one) ends it where it closes.
    """
    if tag_id not in tags:
        return None
    names: list[str] = []
    seen: set[UUID] = set()
    current: UUID | None = tag_id
    while current is not None and current in tags and current not in seen:
        seen.add(current)
        names.append(tags[current].name)
        current = tags[current].parent_id
    return PATH_SEPARATOR.join(reversed(names))


def subtree(tags: Mapping[UUID, TagNode], tag_id: UUID) -> set[UUID]:
    """The tag and every tag below it."""
    children: dict[UUID, list[UUID]] = {}
    for child, node in tags.items():
        if node.parent_id is not None:
            children.setdefault(node.parent_id, []).append(child)
    found: set[UUID] = set()
    todo = [tag_id]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, ()))
    return found
