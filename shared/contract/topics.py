"""Topic names of the contract (each can be renamed by settings)."""

from __future__ import annotations

#: Every contact event Kontakt publishes; key = person id.
CONTACTS_EVENTS = "contacts.events"

#: Topics other services publish and Kontakt consumes.
ACTIVITIES_EVENTS = "activities.events"
OPPORTUNITIES_EVENTS = "opportunities.events"
CAMPAIGNS_EVENTS = "campaigns.events"
PROJECTS_EVENTS = "projects.events"

INBOUND_TOPICS: tuple[str, ...] = (
    ACTIVITIES_EVENTS,
    OPPORTUNITIES_EVENTS,
    CAMPAIGNS_EVENTS,
    PROJECTS_EVENTS,
)
