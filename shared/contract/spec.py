"""Machine-readable forms of the contract: JSON Schemas and the AsyncAPI document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from faststream.specification.asyncapi.site import get_asyncapi_html
from faststream.specification.base import Specification
from pydantic import TypeAdapter

from shared.contract import contacts, inbound, infotags, sync
from shared.settings import KontaktSettings

#: The checked-in copies' file names in docs/contract/ (the contract test compares them).
SCHEMAS_FILE = "event-schemas.json"
ASYNCAPI_FILE = "asyncapi.json"


def json_schemas(settings: KontaktSettings | None = None) -> dict[str, Any]:
    """The JSON Schema of every event we publish and consume, by topic and type."""
    s = settings or default_settings()
    published = {
        name: model.model_json_schema() for name, model in contacts.CONTACT_EVENTS_BY_TYPE.items()
    }
    items = TypeAdapter(inbound.ItemEvent).json_schema(by_alias=True)
    return {
        s.contacts_topic: published,
        s.infotags_topic: {
            name: model.model_json_schema()
            for name, model in infotags.INFOTAG_EVENTS_BY_TYPE.items()
        },
        s.activities_topic: {"EmailLogged": inbound.EmailLogged.model_json_schema(by_alias=True)},
        s.opportunities_topic: items,
        s.campaigns_topic: items,
        s.projects_topic: items,
        s.sync_events_topic: {
            "OutlookSyncStatusChanged": sync.OutlookSyncStatusChanged.model_json_schema()
        },
    }


def _document_broker(settings: KontaktSettings) -> KafkaBroker:
    broker = KafkaBroker(settings.kafka_bootstrap)
    broker.publisher(
        settings.contacts_topic,
        schema=contacts.ContactEvent,
        title=f"{settings.contacts_topic}:publish",
        description=(
            "Every contact event, JSON, key = person id (all versions of a human on one"
            " partition, in order). At-least-once: deduplicate by event_id."
        ),
    )
    broker.publisher(
        settings.infotags_topic,
        schema=infotags.InfotagEvent,
        title=f"{settings.infotags_topic}:publish",
        description=(
            "Every change to the infotag catalogue (the tree of contact tags), JSON, all"
            " under one key (the catalogue id), in order. At-least-once: deduplicate by"
            " event_id, or keep the highest catalogue_version applied."
        ),
    )

    broker.publisher(
        settings.sync_events_topic,
        schema=sync.OutlookSyncStatusChanged,
        title=f"{settings.sync_events_topic}:publish",
        description=(
            "Outcomes of the Outlook sync per (user, person): linked, updated, unlinked,"
            " failed with reason. JSON, key = person id. At-least-once: deduplicate by"
            " event_id; keep the highest sequence per (user_id, person_id)."
        ),
    )

    async def email_logged(message: inbound.EmailLogged) -> None:
        """Documentation only."""

    async def item_event(message: inbound.ItemEvent) -> None:
        """Documentation only."""

    broker.subscriber(
        settings.activities_topic,
        group_id="kontakt-projections",
        title=f"{settings.activities_topic}:consume",
        description="E-mails logged by the activities service (the Details tab's activities).",
    )(email_logged)
    for topic, what in (
        (settings.opportunities_topic, "sales opportunities"),
        (settings.campaigns_topic, "campaigns"),
        (settings.projects_topic, "projects"),
    ):
        broker.subscriber(
            topic,
            group_id="kontakt-projections",
            title=f"{topic}:consume",
            description=f"Item events of {what}, and contacts linked to them with a role.",
        )(item_event)
    return broker


def asyncapi_specification(settings: KontaktSettings) -> Specification:
    """The AsyncAPI 3.0 specification of every topic Kontakt publishes and consumes."""
    return AsyncAPI(
        _document_broker(settings),
        title="Kontakt events",
        version="1",
        description="Kontakt's public event contract. Versioning rules: docs/contract/README.md.",
    ).to_specification()


def asyncapi_document(settings: KontaktSettings) -> dict[str, Any]:
    """The AsyncAPI document as JSON data."""
    document: dict[str, Any] = asyncapi_specification(settings).to_jsonable()
    return document


def asyncapi_html(settings: KontaktSettings) -> str:
    """An HTML page rendering the AsyncAPI document."""
    return get_asyncapi_html(asyncapi_specification(settings), try_it_out_path=None)


def default_settings() -> KontaktSettings:
    """The settings' defaults, whatever the environment says (for checked-in copies)."""
    return KontaktSettings.model_construct()


def render(data: Any) -> str:
    """Stable JSON text for checked-in copies."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_docs(directory: Path) -> list[Path]:
    """Write the checked-in copies from the code into directory (after a deliberate change)."""
    directory.mkdir(parents=True, exist_ok=True)
    schemas, asyncapi = directory / SCHEMAS_FILE, directory / ASYNCAPI_FILE
    schemas.write_text(render(json_schemas()))
    asyncapi.write_text(render(asyncapi_document(default_settings())))
    return [schemas, asyncapi]
