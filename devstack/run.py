"""`kontakt run`: the local servers, every Kontakt process, and the demo data, until Ctrl-C."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import httpx

from devstack import stack
from devstack.demo import DEMO_USER, seed
from devstack.supervisor import Child, Supervisor
from shared.auth import mint_token
from shared.settings import KontaktSettings

#: Health ports of the processes without an API, when `kontakt run` starts them.
RUN_PORTS = {
    "KONTAKT_RELAY_HTTP_PORT": "8011",
    "KONTAKT_WORKER_HTTP_PORT": "8012",
    "KONTAKT_SYNC_HTTP_PORT": "8013",
}

#: Every process `kontakt run` starts: a name for messages and its `kontakt` arguments.
CHILDREN = [
    Child("contacts API", ["serve", "contacts"]),
    Child("relay", ["relay"]),
    Child("projection worker", ["projections", "worker"]),
    Child("query API", ["projections", "query"]),
    Child("Graph-compatible server", ["graph-server", "--mailboxes", DEMO_USER]),
    Child("sync worker", ["sync", "worker"]),
    Child("web UI", ["serve", "web"]),
]


class RunError(RuntimeError):
    """A process of `kontakt run` did not become ready."""


def run_system(demo: bool, say: Callable[[str], None]) -> int:
    """Start the servers and every process, seed the demo, wait; return the exit code."""
    cfg = stack.StackConfig.from_env()
    already = stack.status(cfg)
    was_running = bool(already["postgres"]["running"] and already["kafka"]["running"])
    info = stack.up(cfg)
    # The launcher's connection settings and local defaults, unless the environment
    # says otherwise; Outlook sync talks to the local Graph-compatible server.
    for key, value in info.as_env().items():
        os.environ.setdefault(key, value)
    for key, value in RUN_PORTS.items():
        os.environ.setdefault(key, value)
    graph_port = os.environ.setdefault("KONTAKT_SYNC_GRAPH_SERVER_PORT", "28080")
    graph = f"http://127.0.0.1:{graph_port}"
    os.environ.setdefault("KONTAKT_SYNC_GRAPH_BASE_URL", f"{graph}/v1.0")
    os.environ.setdefault("KONTAKT_SYNC_GRAPH_AUTHORITY", graph)
    os.environ.setdefault("KONTAKT_SYNC_GRAPH_CLIENT_ID", "local")
    os.environ.setdefault("KONTAKT_SYNC_GRAPH_CLIENT_SECRET", "local-secret")
    # Local runs sync every user to the mailbox of its name (the local server's).
    os.environ.setdefault("KONTAKT_SYNC_DEV_MAILBOX_FALLBACK", "true")
    os.environ.setdefault("KONTAKT_LOG_JSON", "false")
    settings = KontaktSettings()
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    query_url = f"http://{settings.query_host}:{settings.query_port}"
    os.environ.setdefault("KONTAKT_CONTACTS_API_URL", api_url)
    os.environ.setdefault("KONTAKT_QUERY_API_URL", query_url)
    settings = KontaktSettings()
    supervisor = Supervisor(CHILDREN, dict(os.environ), say)
    supervisor.start()
    try:
        health = [settings.relay_http_port, settings.worker_http_port, settings.sync_http_port]
        web_url = f"http://{settings.web_host}:{settings.web_port}"
        ready = [
            f"{api_url}/health/ready",
            f"{query_url}/health/ready",
            f"{web_url}/health/ready",
        ] + [f"http://{settings.health_host}:{port}/health/ready" for port in health]
        deadline = time.monotonic() + 120
        for url in ready:
            while True:
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or not supervisor.all_running():
                    raise RunError(f"{url} did not become ready")
                time.sleep(0.3)
        token = mint_token(settings, DEMO_USER, [], 12 * 3600)
        if demo:
            ids = seed(settings, token, api_url)
            say(f"demo data seeded: Karen Jensen is {ids.contacts['karen']}")
        say(f"web UI:         {web_url}/ (sign in with any user name)")
        say(f"contacts API:   {api_url}/docs")
        say(f"query API:      {query_url}/docs")
        say(f"events (AsyncAPI): {api_url}/asyncapi")
        say(f"demo user's Outlook folder: {graph}/_admin/users/{DEMO_USER}/contacts")
        say(
            f"metrics: {api_url}/metrics, {query_url}/metrics, "
            + ", ".join(f"http://{settings.health_host}:{p}/metrics" for p in health)
        )
        say(f"token for user '{DEMO_USER}': {token}")
        say("Ctrl-C stops everything this command started.")
        return supervisor.wait()
    finally:
        supervisor.stop()
        if not was_running:
            for line in stack.down(cfg):
                say(line)
