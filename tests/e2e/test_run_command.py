"""The README's run command: every process, the demo data on every tab and in Outlook,
metrics that move, and a clean stop with nothing left behind."""

from __future__ import annotations

import os
import re
import signal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.settings import KontaktSettings
from tests.support import env_of, eventually_sync, free_port, start_kontakt


def samples(url: str) -> dict[str, float]:
    """A /metrics page as {name{labels}: value}."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def total(metrics: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix))


def processes_with(marker: str) -> list[int]:
    """Pids whose environment mentions marker (this test's own database)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return [p for p in found if p != os.getpid()]


def test_run_brings_everything_up_with_the_demo_and_stops_cleanly(
    isolated_settings: KontaktSettings, tmp_path: Path
) -> None:
    ports = {
        name: free_port() for name in ("api", "query", "web", "relay", "worker", "sync", "graph")
    }
    env = env_of(isolated_settings)
    for key in [k for k in env if k.startswith("KONTAKT_")]:
        stack = ("KONTAKT_PG_PORT", "KONTAKT_KAFKA_PORT", "KONTAKT_KAFKA_CONTROLLER_PORT")
        local = ("_GRAPH_", "_MAILBOX")  # the local Graph server and whose mailbox is whose
        if (key.endswith(("_PORT", "_URL")) and key not in stack) or any(p in key for p in local):
            del env[key]  # let `run` choose its local defaults (ports below)
    env.update(
        {
            "KONTAKT_API_PORT": str(ports["api"]),
            "KONTAKT_QUERY_PORT": str(ports["query"]),
            "KONTAKT_WEB_PORT": str(ports["web"]),
            "KONTAKT_RELAY_HTTP_PORT": str(ports["relay"]),
            "KONTAKT_WORKER_HTTP_PORT": str(ports["worker"]),
            "KONTAKT_SYNC_HTTP_PORT": str(ports["sync"]),
            "KONTAKT_SYNC_GRAPH_SERVER_PORT": str(ports["graph"]),
            "KONTAKT_SYNC_CONSUMER_GROUP": f"sync-{isolated_settings.pg_database}",
        }
    )
    log = tmp_path / "run.log"
    proc = start_kontakt(["run"], env, log)
    try:
        printed = eventually_sync(
            lambda: "Ctrl-C stops" in log.read_text() and log.read_text(), "the banner", 120, 0.5
        )
        token = re.search(r"token for user 'demo': (\S+)", printed)
        karen = re.search(r"Karen Jensen is (\S+)", printed)
        assert token and karen, printed[-3000:]
        web = f"http://127.0.0.1:{ports['web']}/"
        assert f"web UI:         {web}" in printed
        assert httpx.get(f"{web}sign-in", timeout=10).status_code == 200
        for url in ("/docs", "/asyncapi", f":{ports['graph']}/_admin/users/demo/contacts"):
            assert url.lstrip("/") in printed
        auth = {"Authorization": f"Bearer {token.group(1)}"}
        q = httpx.Client(base_url=f"http://127.0.0.1:{ports['query']}", headers=auth, timeout=10)
        kid = karen.group(1)

        def tab(path: str) -> Any:
            response = q.get(f"/contacts/{kid}{path}")
            return response.json() if response.status_code == 200 else None

        employments = eventually_sync(
            lambda: (e := tab("/employments")) and len(e) == 2 and e, "employments", every=0.5
        )
        assert [(e["company_name"], e["status"]) for e in employments] == [
            ("Nordlys A/S", "former"),
            ("Havbro ApS", "current"),
        ]
        before = employments[0]["contact_id"]
        details = tab("")
        assert (
            details["job_title"] == "CFO" and details["other_versions"][0]["contact_id"] == before
        )
        eventually_sync(lambda: (tab("/activities") or {}).get("total") == 1, "activity", every=0.5)
        assert {t["tag"] for t in tab("/infotags")} == {"Kunde/Guld", "Nyhedsbrev"}
        assert q.get(f"/contacts/{kid}/photo").headers["content-type"] == "image/png"
        assert eventually_sync(
            lambda: (tab("/projects") or {}).get("total") == 1, "project", every=0.5
        )
        old = q.get(f"/contacts/{before}/opportunities").json()
        assert old["items"][0]["title"] == "Nye servere 2027"
        assert q.get(f"/contacts/{before}/campaigns").json()["total"] == 1
        # The Nordlys version keeps the mail to its work address; the mail to her private
        # address, sent after the move, is on her current version (above).
        assert q.get(f"/contacts/{before}/activities").json()["total"] == 2
        # The demo user's Outlook folder on the Graph-compatible server.
        folder = f"http://127.0.0.1:{ports['graph']}/_admin/users/demo/contacts"
        items = eventually_sync(
            lambda: (v := httpx.get(folder).json()["value"]) and len(v) == 2 and v,
            "the Outlook items",
            every=0.5,
        )
        assert {i["displayName"] for i in items} == {"Karen Marie Jensen", "Ole Hansen"}

        # The sync service's outcome reaches the Details tab (linked, or updated since).
        def sync_statuses() -> set[str]:
            return {u["status"] for u in (tab("") or {}).get("outlook_sync", [])}

        assert eventually_sync(
            lambda: (st := sync_statuses()) and st <= {"linked", "updated"},
            "sync statuses",
            every=0.5,
        )

        # Metrics of every process, and a command moves the counters.
        api = f"http://127.0.0.1:{ports['api']}"
        commands_before = total(samples(f"{api}/metrics"), "kontakt_commands_total")
        httpx.post(f"{api}/contacts/{kid}/infotags", json={"tag": "Metrics"}, headers=auth)
        after = samples(f"{api}/metrics")
        assert total(after, "kontakt_commands_total") == commands_before + 1
        assert eventually_sync(
            lambda: (
                total(
                    samples(f"http://127.0.0.1:{ports['relay']}/metrics"),
                    "kontakt_relay_published_total",
                )
                > 0
            ),
            "relay published",
            every=0.5,
        )
        worker = samples(f"http://127.0.0.1:{ports['worker']}/metrics")
        assert total(worker, "kontakt_projection_messages_total") > 0
        assert total(worker, "kontakt_projection_latency_seconds_count") > 0
        assert any(k.startswith("kontakt_consumer_lag{") for k in worker)
        sync = samples(f"http://127.0.0.1:{ports['sync']}/metrics")
        assert total(sync, "kontakt_graph_calls_total") > 0

        # Both workers export their groups' lag and stall gauges; moving groups are not stalled.
        # The gauges appear with the first sample that finds the topics' partitions: a worker
        # that started before the relay made its topics has them one sampling interval later.
        def with_lag(url: str) -> dict[str, float] | None:
            found = samples(url)
            return found if any(k.startswith("kontakt_consumer_lag{") for k in found) else None

        for name in ("worker", "sync"):
            url = f"http://127.0.0.1:{ports[name]}/metrics"
            exported = eventually_sync(
                partial(with_lag, url), f"the {name}'s consumer lag gauges", every=0.5
            )
            assert any(k.startswith("kontakt_consumer_stalled{") for k in exported)
            assert total(exported, "kontakt_consumer_stalled{") == 0
        assert "kontakt_relay_lag_events{}" in samples(f"http://127.0.0.1:{ports['relay']}/metrics")
        for port in (ports["relay"], ports["worker"], ports["sync"]):
            assert httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200

        # Seeding again (a second run would) duplicates nothing.
        from devstack.demo import seed

        again = seed(isolated_settings, token.group(1), api)
        assert again.contacts["karen"] == kid
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
    assert processes_with(isolated_settings.pg_database) == []
