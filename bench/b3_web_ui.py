"""B3W: the web UI's contact window under B3's load. While B3 drives its commands
(`PATCH /contacts/{id}` at 200/s, open loop, watched through the query API), one signed-in
client GETs the contact window (`/contacts/{id}?tab=details`: the page and every tab's
query API call it makes) back to back; the figure is the web process's server time (its
`Server-Timing` header), p50/p99.

Baseline: the same page, the same client, in the same run before the load starts (the
pipeline idle).

The processes are the real ones: contacts API, relay, projection worker (contacts), query
API, and the web UI (`kontakt serve web`).

    python -m bench.b3_web_ui [--quick]
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx

from bench.b3_freshness import RATE, drive, seed_contacts, start_pipeline, wait_visible
from bench.common import Figure, Report, isolated, percentile, processes, progress, run_alone, spawn
from shared.auth import mint_token
from shared.settings import KontaktSettings
from tests.support import env_of, free_port

SERVER_TIMING = re.compile(r"app;dur=([0-9.]+)")


def start_web(
    settings: KontaktSettings, api_url: str, query_url: str
) -> tuple[str, dict[str, str]]:
    """The web UI's port and environment, over the pipeline's two APIs."""
    port = free_port()
    env = env_of(settings, KONTAKT_CONTACTS_API_URL=api_url, KONTAKT_QUERY_API_URL=query_url)
    return f"http://127.0.0.1:{port}", {**env, "KONTAKT_WEB_PORT": str(port)}


async def sign_in(web: httpx.AsyncClient, user: str = "bench") -> None:
    """Sign in through the form (development secrets), keeping the session cookie."""
    form = await web.get("/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if csrf is None:
        raise RuntimeError("the sign-in page has no CSRF token")
    answer = await web.post("/sign-in", data={"csrf": csrf.group(1), "user": user})
    if answer.status_code != 303:
        raise RuntimeError(f"signing in answered {answer.status_code}")


async def watch_window(
    web: httpx.AsyncClient, contact_id: uuid.UUID, until: asyncio.Event | float
) -> tuple[list[float], list[float], int]:
    """GET the contact window back to back (a count, or until the event is set);
    (server times, client times, failures), in seconds."""
    server: list[float] = []
    client: list[float] = []
    failures = 0
    url = f"/contacts/{contact_id}"

    def more() -> bool:
        if isinstance(until, asyncio.Event):
            return not until.is_set()
        return len(server) + failures < until

    while more():
        started = time.perf_counter()
        answer = await web.get(url, params={"tab": "details"})
        took = time.perf_counter() - started
        timing = SERVER_TIMING.search(answer.headers.get("server-timing", ""))
        if answer.status_code != 200 or timing is None:
            failures += 1
            continue
        server.append(float(timing.group(1)) / 1000)
        client.append(took)
    return server, client, failures


async def measure(
    api_url: str, query_url: str, web_url: str, token: str, ids: list[uuid.UUID], seconds: float
) -> tuple[tuple[list[float], list[float], int], tuple[list[float], list[float], int], int]:
    """(idle window times, window times under B3's load, B3 commands sent)."""
    window, load = ids[-1], ids[:-1]  # the window's contact is not one the load edits
    async with httpx.AsyncClient(base_url=web_url, timeout=60) as web:
        await sign_in(web)
        await watch_window(web, window, 20)  # warm up: connections, templates
        idle = await watch_window(web, window, int(seconds * 20))
        done = asyncio.Event()

        async def commands() -> int:
            try:
                _, sent, _ = await drive(api_url, query_url, token, load, seconds)
            finally:
                done.set()
            return sent

        sent, loaded = await asyncio.gather(commands(), watch_window(web, window, done))
    return idle, loaded, sent


def run(report: Report, quick: bool = False) -> None:
    """Run B3W."""
    seconds = 6.0 if quick else 15.0
    with isolated("b3w") as settings:
        ids = seed_contacts(settings, 401)
        token = mint_token(settings, "bench")
        with processes() as procs:
            api_url, query_url = start_pipeline(settings, procs)
            web_url, env = start_web(settings, api_url, query_url)
            web = spawn("web", ["serve", "web", "--port", web_url.rsplit(":", 1)[1]], env)
            procs.append(web)
            web.wait_ready(f"{web_url}/health/ready")
            asyncio.run(wait_visible(query_url, token, ids))
            progress(f"contact window idle, then under PATCH at {RATE:.0f}/s for {seconds:.0f}s")
            idle, loaded, sent = asyncio.run(
                measure(api_url, query_url, web_url, token, ids, seconds)
            )
    (i_server, i_client, i_fail), (l_server, l_client, l_fail) = idle, loaded
    if i_fail or l_fail:
        progress(f"{i_fail + l_fail} window requests failed")
    for p in (50, 99):
        value, base = percentile(l_server, p) * 1000, percentile(i_server, p) * 1000
        client, client_base = percentile(l_client, p) * 1000, percentile(i_client, p) * 1000
        note = (
            f"{len(l_server):,} pages under {sent:,} commands, {len(i_server):,} idle;"
            f" client-side {client:.1f} vs {client_base:.1f} ms"
        )
        report.add(
            Figure(
                "B3W",
                f"contact window server time p{p} under B3's load",
                value,
                "ms",
                base,
                "same page, pipeline idle",
                better="lower",
                note=note,
            )
        )


def main() -> None:
    """Run B3W alone."""
    run_alone(run, __doc__)


if __name__ == "__main__":
    main()
