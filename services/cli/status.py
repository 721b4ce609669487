"""`kontakt status`: each service's own status, Kafka's consumer lag and stalls, in one report.

It prints one clear line and exits non-zero when neither server can be asked, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from shared.commandline import CommandError, run_command
from shared.settings import KontaktSettings


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
            raise CommandError("; ".join(report["problems"]))
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

    run_command(body)


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
