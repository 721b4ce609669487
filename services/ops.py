"""Analysts' and operators' commands: history, as-of, replay, status.

Each prints one clear line and exits non-zero on a wrong id, a bad date or an
unreachable server, never a traceback.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Annotated, Any
from uuid import UUID

import typer

from shared.settings import KontaktSettings


class OpsError(Exception):
    """A user-facing failure: printed as one line."""


def fail(message: str) -> None:
    """Print one error line and exit 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def parse_id(text: str) -> UUID:
    """A contact/person/company id, or a clear error."""
    try:
        return UUID(text)
    except ValueError:
        raise OpsError(f"not an id: {text!r} (expected a UUID)") from None


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """A date (YYYY-MM-DD) or ISO timestamp, UTC unless it says otherwise."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(
                day, datetime.max.time() if end_of_day else datetime.min.time()
            )
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise OpsError(
            f"not a date or timestamp: {text!r} (e.g. 2026-11-26 or 2026-11-26T12:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@contextmanager
def contacts_app(settings: KontaktSettings) -> Iterator[Any]:
    """The contacts application, or a clear error when PostgreSQL cannot be reached."""
    from services.contacts.store import build_contacts_app, close_contacts_app

    try:
        app = build_contacts_app(settings)
    except Exception as exc:  # any failure to connect: one line
        raise OpsError(
            f"cannot reach PostgreSQL at {settings.pg_host}:{settings.pg_port}"
            f"/{settings.pg_database}: {type(exc).__name__}"
        ) from None
    try:
        yield app
    finally:
        close_contacts_app(app)


def _run(body: Any) -> None:
    try:
        body()
    except OpsError as exc:
        fail(str(exc))
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


# ---------------------------------------------------------------- commands


def history(
    contact: Annotated[str, typer.Argument(help="The contact id")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of text")] = False,
) -> None:
    """Every event of a contact: version, when, who, what changed."""

    def body() -> None:
        from services.contacts.domain import ContactNotFoundError

        contact_id = parse_id(contact)
        with contacts_app(KontaktSettings()) as app:
            try:
                entries = app.history(contact_id)
            except ContactNotFoundError:
                raise OpsError(f"contact {contact_id} not found") from None
        for e in entries:
            if as_json:
                typer.echo(_json(e))
                continue
            changed = ", ".join(
                f"{k}: {_short(v['old'])} -> {_short(v['new'])}"
                for k, v in e["changes"].items()
                if k not in ("status",) or len(e["changes"]) == 1
            )
            typer.echo(
                f"v{e['version']}  {e['occurred_at']:%Y-%m-%d %H:%M:%S}  {e['type']:<22}"
                f" by {e['actor']}  {changed}"
            )

    _run(body)


def _short(value: Any) -> str:
    text = _json(value) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_of(
    contact: Annotated[str, typer.Argument(help="The contact id")],
    when: Annotated[
        str, typer.Argument(help="A date (end of that day, UTC), timestamp or version")
    ],
) -> None:
    """The contact as it was at a date, a moment, or a version."""

    def body() -> None:
        from services.contacts.domain import ContactNotFoundError

        contact_id = parse_id(contact)
        with contacts_app(KontaktSettings()) as app:
            try:
                if when.isdigit():
                    state = app.get_contact(contact_id, int(when))
                else:
                    state = app.get_contact_as_of(contact_id, parse_moment(when, end_of_day=True))
                    if state is None:
                        raise OpsError(f"contact {contact_id} did not exist yet at {when}")
            except ContactNotFoundError:
                raise OpsError(f"contact {contact_id} (or that version) not found") from None
            typer.echo(json.dumps(state.state(), default=str, indent=2, ensure_ascii=False))

    _run(body)


REPLAY_COLUMNS = [
    "global_position", "event_id", "type", "occurred_at", "actor", "correlation_id",
    "contact_id", "person_id", "aggregate_version", "data",
]  # fmt: skip


def replay(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="A file (appended to when resuming)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    from_position: Annotated[int, typer.Option(min=0, help="Resume after this store position")] = 0,
    since: Annotated[str | None, typer.Option(help="From this date or timestamp")] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to this date (inclusive) or timestamp")
    ] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="Only these event types (repeatable)")
    ] = None,
    person: Annotated[str | None, typer.Option(help="Only this person's events")] = None,
    contact: Annotated[str | None, typer.Option(help="Only this contact's events")] = None,
    company: Annotated[str | None, typer.Option(help="Only contacts of this company")] = None,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events read per round")] = 2000,
) -> None:
    """Stream events from the event store, filtered, as JSON Lines or CSV; resumable."""

    def body() -> None:
        from services.contacts.export import StoreReader
        from shared.contract.contacts import CONTACT_EVENT_TYPES

        if fmt not in ("jsonl", "csv"):
            raise OpsError(f"unknown format {fmt!r}: use jsonl or csv")
        known = {t.model_fields["type"].default for t in CONTACT_EVENT_TYPES}
        unknown = set(event_type or []) - known
        if unknown:
            raise OpsError(
                f"unknown event type {sorted(unknown)}; known: {', '.join(sorted(known))}"
            )
        start, end = (
            (parse_moment(since) if since else None),
            (parse_moment(until, end_of_day=True) if until else None),
        )
        person_id, contact_id, company_id = (
            parse_id(person) if person else None,
            parse_id(contact) if contact else None,
            parse_id(company) if company else None,
        )
        with contacts_app(KontaktSettings()) as app:
            reader = StoreReader(app)
            companies: dict[UUID, UUID] = {}

            def company_of(cid: UUID) -> UUID:
                if cid not in companies:
                    companies[cid] = app.get_contact(cid, 1).company_id
                return companies[cid]

            sink: IO[str] = (
                output.open("a" if from_position else "w", newline="") if output else sys.stdout
            )
            writer = csv.writer(sink) if fmt == "csv" else None
            if writer is not None and not from_position:
                writer.writerow(REPLAY_COLUMNS)
            position, written = from_position, 0
            try:
                while True:
                    events, last = reader.read(position, batch)
                    if last is None:
                        break
                    for e in events:
                        if event_type and e.type not in event_type:
                            continue
                        if (start and e.occurred_at < start) or (end and e.occurred_at > end):
                            continue
                        if person_id and e.person_id != person_id:
                            continue
                        if contact_id and e.contact_id != contact_id:
                            continue
                        if company_id and company_of(e.contact_id) != company_id:
                            continue
                        row = e.model_dump(mode="json")
                        if writer is not None:
                            writer.writerow(
                                [_json(row[c]) if c == "data" else row[c] for c in REPLAY_COLUMNS]
                            )
                        else:
                            sink.write(_json(row) + "\n")
                        written += 1
                    position = last
            finally:
                if output:
                    sink.close()
        typer.echo(
            f"replayed {written} events up to position {position};"
            f" resume with --from-position {position}",
            err=True,
        )

    _run(body)


def status(
    sample_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            max=300,
            help="Seconds between the two samples of committed offsets (0: one sample, no stall"
            " judgement from offsets)",
        ),
    ] = 3.0,
) -> None:
    """Relay, consumer lag and stalls per group and partition, read models, sync backlog."""

    def body() -> None:
        import logging

        # The Kafka client logs each failed connection; status says it once, in its report.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        settings = KontaktSettings()
        report = asyncio.run(collect_status(settings, sample_seconds))
        if report["store"] is None and report["consumer_lag"] is None:
            # Neither server answered: there is nothing to report.
            raise OpsError("; ".join(report["problems"]))
        typer.echo(json.dumps(report, indent=2, default=str))
        for problem in report["problems"]:
            typer.echo(f"warning: {problem}", err=True)
        for s in report["stalled"] or []:
            at = "nothing committed" if s["committed"] is None else f"offset {s['committed']}"
            typer.echo(
                f"stalled: group {s['group']} on {s['topic']}[{s['partition']}] at {at}"
                f" (end {s['end']}, lag {s['lag']}; seen by {', '.join(s['seen_by'])})",
                err=True,
            )

    _run(body)


async def collect_status(settings: KontaktSettings, sample_seconds: float = 3.0) -> dict[str, Any]:
    """Everything `status` reports, as data; a server that cannot be reached is named, not fatal."""
    store, kafka, workers = await asyncio.gather(
        _store_status(settings),
        _kafka_status(settings, sample_seconds),
        _workers_status(settings),
    )
    problems = []
    unreachable = []
    if isinstance(store, str):
        problems.append(store)
        unreachable.append("PostgreSQL")
        store = {"store": None, "relay": None, "read_models": None, "sync": None, "answered_by": {}}
    lags: list[dict[str, Any]] | None = None
    stalled: dict[tuple[str, str, int], dict[str, Any]] = {}
    if isinstance(kafka, str):
        problems.append(kafka)
        unreachable.append("Kafka")
    else:
        lags = kafka["lags"]
        for s in kafka["stalled"]:
            stalled[(s["group"], s["topic"], s["partition"])] = s
    for name, answer in workers.items():
        if not answer["reachable"]:
            problems.append(f"{name} worker's health server unreachable at {answer['url']}")
        for s in answer.pop("stalled", []):
            key = (s["group"], s["topic"], s["partition"])
            known = stalled.setdefault(key, {**s, "seen_by": []})
            known["seen_by"].append(f"{name} worker")
            known.setdefault("stalled_seconds", s.get("stalled_seconds"))
    return {
        **store,
        "consumer_lag": lags,
        # None: Kafka could not be asked and no worker's health server said anything.
        "stalled": (
            sorted(stalled.values(), key=lambda x: (x["group"], x["topic"], x["partition"]))
            if lags is not None or any(w["reachable"] for w in workers.values())
            else None
        ),
        "workers": workers,
        "unreachable": unreachable,
        "problems": problems,
    }


def status_urls(settings: KontaktSettings) -> dict[str, str]:
    """Where each service serves its own status (those whose ports are configured)."""
    health = {
        "relay": settings.relay_http_port,
        "projection worker": settings.worker_http_port,
        "sync worker": settings.sync_http_port,
    }
    return {
        "contacts API": f"{settings.contacts_api_url.rstrip('/')}/status",
        "query API": f"http://{settings.query_host}:{settings.query_port}/status",
        **{
            name: f"http://{settings.health_host}:{port}/status"
            for name, port in health.items()
            if port
        },
    }


async def _ask_services(settings: KontaktSettings) -> dict[str, dict[str, Any]]:
    """Each running service's own status; one that does not answer (or serves another
    database) is left out."""
    import httpx

    async def ask(client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
        try:
            answer = await client.get(url)
            body = answer.json()
        except Exception:  # not running, or not one of ours
            return None
        ours = isinstance(body, dict) and body.get("database") == settings.pg_address()
        return body if answer.status_code == 200 and ours else None

    urls = status_urls(settings)
    async with httpx.AsyncClient(timeout=5) as client:
        answers = await asyncio.gather(*(ask(client, u) for u in urls.values()))
    return {name: a for name, a in zip(urls, answers, strict=True) if a is not None}


async def _store_status(settings: KontaktSettings) -> dict[str, Any] | str:
    """The store, relay, read-model and sync parts, or why PostgreSQL could not be asked.

    Each part is what its service says of itself at /status; the part of a service that
    does not run is read by that service's own status function in its stead.
    """
    import asyncpg
    import psycopg

    from services.contacts.relay import recorded_position
    from services.contacts.store import store_status
    from services.projections.db import pool_for, read_models_status
    from services.sync.store import sync_counts

    async def read_models() -> dict[str, Any]:
        async with pool_for(settings) as pool:
            return await read_models_status(pool)

    said = await _ask_services(settings)
    answered_by = {}

    async def part(key: str, services: list[str], directly: Any) -> Any:
        for name in services:
            if name in said and key in said[name]:
                answered_by[key] = name
                return said[name][key]
        answered_by[key] = "database"
        return await directly()

    try:
        store = await part("store", ["contacts API"], lambda: store_status(settings))
        relay = await part("relay", ["relay"], lambda: recorded_position(settings))
        rm = await part("read_models", ["projection worker", "query API"], read_models)
        sync = await part("sync", ["sync worker"], lambda: sync_counts(settings.pg_dsn()))
    except (
        OSError,
        TimeoutError,
        psycopg.Error,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        return (
            f"PostgreSQL unreachable: cannot reach PostgreSQL at {settings.pg_host}:"
            f"{settings.pg_port}/{settings.pg_database}: {type(exc).__name__}"
        )
    newest = int(store["newest_position"])
    contacts_rm = rm.get("contacts", {})
    return {
        "store": {"newest_position": newest},
        "relay": {**relay, "lag": newest - int(relay["position"])},
        "read_models": {
            **rm,
            "contacts": {**contacts_rm, "behind_store": newest - int(contacts_rm["position"])},
        },
        "sync": sync,
        "answered_by": answered_by,
    }


def status_groups(settings: KontaktSettings) -> dict[str, list[str]]:
    """Every consumer group of Kontakt and the topics it consumes."""
    from services.projections.worker import FAMILIES, group_id, topics_of

    groups = {group_id(f): topics_of(settings, f) for f in FAMILIES}
    groups[settings.sync_consumer_group] = [settings.contacts_topic]
    return groups


async def _kafka_status(settings: KontaktSettings, sample_seconds: float) -> dict[str, Any] | str:
    """Each group's offsets, sampled twice; or why Kafka could not be asked."""
    from shared.lag import PartitionLag, group_lag

    async def sample() -> list[PartitionLag]:
        rows: list[PartitionLag] = []
        for group, topics in status_groups(settings).items():
            rows.extend(
                await asyncio.wait_for(group_lag(settings.kafka_bootstrap, group, topics), 20)
            )
        return rows

    try:
        first = await sample()
        second = first
        if sample_seconds > 0:
            await asyncio.sleep(sample_seconds)
            second = await sample()
    except Exception as exc:  # an unreachable broker (retriable answers were retried)
        return (
            f"Kafka unreachable: cannot reach Kafka at {settings.kafka_bootstrap}:"
            f" {type(exc).__name__}"
        )
    before = {(p.group, p.topic, p.partition): p.committed for p in first}
    stalled = []
    if sample_seconds > 0:
        for p in second:
            key = (p.group, p.topic, p.partition)
            if p.lag > 0 and key in before and before[key] == p.committed:
                stalled.append(
                    {**p.as_dict(), "seen_by": [f"status (no progress in {sample_seconds:g}s)"]}
                )
    return {"lags": [p.as_dict() for p in second], "stalled": stalled}


async def _workers_status(settings: KontaktSettings) -> dict[str, dict[str, Any]]:
    """What the workers' health servers say (those whose ports are configured)."""
    import httpx

    ports = {"projections": settings.worker_http_port, "sync": settings.sync_http_port}
    out: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for name, port in ports.items():
            if not port:
                continue
            url = f"http://{settings.health_host}:{port}/health/ready"
            try:
                answer = await client.get(url)
                body = answer.json()
            except Exception:  # not running, or not a health server
                out[name] = {"url": url, "reachable": False}
                continue
            body = body if isinstance(body, dict) else {}
            listed = body.get("stalled")
            stalled: list[Any] = listed if isinstance(listed, list) else []
            out[name] = {
                "url": url,
                "reachable": True,
                "ready": answer.status_code == 200,
                **({"detail": str(body["detail"])} if "detail" in body else {}),
                "stalled": [s for s in stalled if isinstance(s, dict) and _is_stall(s)],
            }
    return out


def _is_stall(entry: dict[str, Any]) -> bool:
    return (
        isinstance(entry.get("group"), str)
        and isinstance(entry.get("topic"), str)
        and isinstance(entry.get("partition"), int)
    )
