"""Topics are created by the project with the configured partitions and retention."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.kafka_helpers import topic_partitions, topic_suffix
from tests.support import run_kontakt


async def retention_ms(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
    finally:
        await admin.close()
    for resource in response.resources:
        for entry in resource[4]:
            if entry[0] == "retention.ms":
                return str(entry[1])
    raise AssertionError("retention.ms not described")


async def test_topics_command_creates_every_contract_topic_once(
    settings_env: dict[str, str],
) -> None:
    suffix = topic_suffix()
    names = {
        "KONTAKT_CONTACTS_TOPIC": f"c.{suffix}",
        "KONTAKT_ACTIVITIES_TOPIC": f"a.{suffix}",
        "KONTAKT_OPPORTUNITIES_TOPIC": f"o.{suffix}",
        "KONTAKT_CAMPAIGNS_TOPIC": f"k.{suffix}",
        "KONTAKT_PROJECTS_TOPIC": f"p.{suffix}",
    }
    env = {
        **settings_env,
        **names,
        "KONTAKT_TOPIC_PARTITIONS": "4",
        "KONTAKT_TOPIC_RETENTION_MS": "3600000",
    }
    first = run_kontakt(env, "topics")
    assert first.returncode == 0, first.stderr
    bootstrap = env["KONTAKT_KAFKA_BOOTSTRAP"]
    for topic in names.values():
        assert topic in first.stdout
        assert await topic_partitions(bootstrap, topic) == [0, 1, 2, 3]
        assert await retention_ms(bootstrap, topic) == "3600000"
    again = run_kontakt(env, "topics")
    assert again.returncode == 0 and "none (all exist)" in again.stdout


def test_topics_command_says_so_in_one_line_when_kafka_is_unreachable(
    settings_env: dict[str, str],
) -> None:
    env = {**settings_env, "KONTAKT_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    run = run_kontakt(env, "topics")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: could not create topics at 127.0.0.1:1")
    assert len(run.stderr.strip().splitlines()) == 1
