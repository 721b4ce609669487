"""Logs, metrics and health endpoints every Kontakt process shares.

- JSON logs, one object a line, carrying the correlation id of the command that
  caused the work (a context variable each adapter sets).
- Prometheus metrics in one registry per process, made on first use.
- One set of health routes for every process (/health/live, /health/ready, /metrics,
  /status): the APIs add them to their app, the relay and workers serve them alone.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from shared.stall import ConsumerStalledError

#: The correlation id of the command whose consequences are being handled.
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object with the service and correlation id."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        cid = getattr(record, "correlation_id", None) or correlation_id.get()
        if cid:
            data["correlation_id"] = cid
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        cid = correlation_id.get()
        return f"{text} [cid={cid}]" if cid else text


def configure_logging(service: str, level: int | str = logging.INFO, as_json: bool = True) -> None:
    """Send every log record to stderr: JSON lines, or plain text for a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(service)
        if as_json
        else _PlainFormatter(f"%(asctime)s {service} %(name)s %(levelname)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries' own chatter stays at WARNING.
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class Metrics:
    """Every metric of Kontakt, in one registry of this process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.commands = Counter(
            "kontakt_commands", "Commands handled, by command and outcome", ["command", "outcome"],
            registry=r,
        )  # fmt: skip
        self.command_errors = Counter(
            "kontakt_command_errors", "Commands refused or failed, by error type",
            ["command", "error"], registry=r,
        )  # fmt: skip
        self.command_seconds = Histogram(
            "kontakt_command_seconds", "Command latency", ["command"], registry=r
        )
        self.relay_position = Gauge(
            "kontakt_relay_position", "Store position the relay has published up to", registry=r
        )
        self.relay_lag = Gauge(
            "kontakt_relay_lag_events", "Stored notifications not yet published", registry=r
        )
        self.relay_published = Counter(
            "kontakt_relay_published", "Events the relay published", registry=r
        )
        self.relay_active = Gauge(
            "kontakt_relay_active", "1 when this relay holds the lock", registry=r
        )
        self.consumer_lag = Gauge(
            "kontakt_consumer_lag", "Messages not yet committed, per group and partition",
            ["group", "topic", "partition"], registry=r,
        )  # fmt: skip
        self.consumer_stalled = Gauge(
            "kontakt_consumer_stalled",
            "1 when the group has lag and no committed progress for the stall time",
            ["group", "topic", "partition"], registry=r,
        )  # fmt: skip
        self.projected = Counter(
            "kontakt_projection_messages", "Messages handled by read-model workers",
            ["family", "outcome"], registry=r,
        )  # fmt: skip
        self.projection_latency = Histogram(
            "kontakt_projection_latency_seconds",
            "From the event's time to its read-model commit",
            ["family"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.graph_calls = Counter(
            "kontakt_graph_calls", "Microsoft Graph requests, by method and status",
            ["method", "status"], registry=r,
        )  # fmt: skip
        self.graph_throttles = Counter(
            "kontakt_graph_throttles", "Graph answers 429 (throttled)", registry=r
        )
        self.graph_failures = Counter(
            "kontakt_graph_failures", "Graph requests that failed for good", registry=r
        )

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


_metrics: Metrics | None = None


def metrics() -> Metrics:
    """This process's metrics (made on first use, never at import)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def metrics_response() -> Response:
    """An HTTP response with the Prometheus exposition."""
    return Response(metrics().exposition(), media_type=CONTENT_TYPE_LATEST)


Check = Callable[[], Awaitable[None]]

#: What a process knows of itself, served at GET /status.
StatusReport = Callable[[], Awaitable[dict[str, Any]]]


def install_health(
    app: FastAPI,
    service: str,
    ready: Check,
    extra: dict[str, Callable[[], Any]] | None = None,
    status: StatusReport | None = None,
) -> None:
    """/health/live, /health/ready (ready() raises when not ready), /metrics, /status, extras."""
    from fastapi.responses import PlainTextResponse

    from shared.http import METRICS_RESPONSES, error_responses

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "service": service}

    @app.get("/health/ready", tags=["health"], response_model=None, responses=error_responses(503))
    async def is_ready() -> dict[str, str] | JSONResponse:
        """Readiness: the servers this process needs answer, and it makes progress."""
        try:
            await asyncio.wait_for(ready(), timeout=5)
        except Exception as exc:  # any failure means not ready
            body: dict[str, Any] = {"status": "unavailable", "service": service}
            body["detail"] = str(exc) or type(exc).__name__
            if isinstance(exc, ConsumerStalledError):
                body["stalled"] = [s.as_dict() for s in exc.stalls]
            return JSONResponse(body, status_code=503)
        return {"status": "ok", "service": service}

    @app.get(
        "/metrics", tags=["health"], response_class=PlainTextResponse, responses=METRICS_RESPONSES
    )
    async def exposition() -> Response:
        """Prometheus metrics of this process."""
        return metrics_response()

    routes = dict(extra or {})
    if status is not None:
        routes["/status"] = status
    for path, handler in routes.items():
        app.add_api_route(
            path,
            _unavailable_on_error(service, handler),
            methods=["GET"],
            tags=["health"],
            responses=error_responses(503),
        )


def health_app(
    service: str,
    ready: Check,
    extra: dict[str, Callable[[], Any]] | None = None,
    status: StatusReport | None = None,
) -> FastAPI:
    """The HTTP app of a process without an API of its own: install_health's routes only."""
    app = FastAPI(title=f"Kontakt {service} health", docs_url=None, redoc_url=None)
    install_health(app, service, ready, extra, status)
    return app


def _unavailable_on_error(service: str, handler: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    # An extra route that needs a server (e.g. /lag needs Kafka) says 503 when it is
    # unreachable, in the same shape as /health/ready, never a 500.
    async def route() -> Any:
        try:
            result = handler()
            return await result if inspect.isawaitable(result) else result
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "service": service,
                 "detail": f"{type(exc).__name__}: {exc}"},
                status_code=503,
            )  # fmt: skip

    return route


def seconds_since(moment: datetime) -> float:
    """Seconds from a moment to now (never negative)."""
    return max(0.0, time.time() - moment.timestamp())
