"""The one settings class every Kontakt process is configured by (environment, prefix KONTAKT_)."""

from __future__ import annotations

import base64
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Development-only defaults; a process started with them says so in its log.
DEV_JWT_SECRET = "kontakt-dev-jwt-secret-change-me-0123456789"
DEV_KEY_SECRET = "kontakt-dev-key-secret-change-me-0123456789"
DEV_MASTER_KEY = "a29udGFrdC1kZXYtbWFzdGVyLWtleS0zMi1ieXRlcyE="  # 32 bytes, base64


class KontaktSettings(BaseSettings):
    """Configuration of every Kontakt process; each field is KONTAKT_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="KONTAKT_", extra="ignore")

    # PostgreSQL (the launcher's defaults).
    pg_host: str = "127.0.0.1"
    pg_port: int = 25432
    pg_user: str = "kontakt"
    pg_password: SecretStr = SecretStr("kontakt")
    pg_database: str = "kontakt"
    pg_pool_size: int = Field(default=10, ge=1, le=100)

    # Kafka (the launcher's defaults) and the contract's topics.
    kafka_bootstrap: str = "127.0.0.1:29092"
    contacts_topic: str = "contacts.events"
    infotags_topic: str = "infotags.events"
    activities_topic: str = "activities.events"
    opportunities_topic: str = "opportunities.events"
    campaigns_topic: str = "campaigns.events"
    projects_topic: str = "projects.events"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    # Retention bounds how long messages published before an erasure stay on the bus.
    topic_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=60_000)

    # Relay from the event store to Kafka.
    relay_batch_size: int = Field(default=500, ge=1, le=10_000)
    relay_poll_seconds: float = Field(default=1.0, gt=0)
    #: How long the relay's producer waits to fill a batch. The relay hands it whole batches
    #: read from the store, so waiting only adds latency (about 8 ms of B3's p50 at 5 ms).
    relay_linger_ms: int = Field(default=0, ge=0, le=1000)

    # Health and metrics HTTP ports of the processes without an API (0: none).
    relay_http_port: int = Field(default=0, ge=0, le=65535)
    worker_http_port: int = Field(default=0, ge=0, le=65535)
    sync_http_port: int = Field(default=0, ge=0, le=65535)
    health_host: str = "127.0.0.1"
    # A consumer group with lag whose committed offset has not moved this long is stalled.
    consumer_stall_seconds: float = Field(default=60.0, gt=0, le=86_400)
    # Logs: JSON lines (for collectors) or plain text (for people at a terminal).
    log_json: bool = True
    log_level: str = "INFO"

    # Authentication: HS256 with a shared secret, or RS256 with a public key (PEM).
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_public_key: str | None = None
    jwt_private_key: SecretStr | None = None  # only for `kontakt token` with RS256
    jwt_audience: str | None = None
    jwt_issuer: str | None = None

    # Keyed hashes of uniqueness keys and photo contents.
    key_secret: SecretStr = SecretStr(DEV_KEY_SECRET)

    # Per-person encryption: person keys are wrapped by the master key (base64, 32 bytes).
    # Rotation: set the new key as MASTER_KEY, the old one(s) in MASTER_KEYS_PREVIOUS
    # (comma-separated), run `kontakt keys rotate`, then drop the old ones.
    master_key: SecretStr = SecretStr(DEV_MASTER_KEY)
    master_keys_previous: SecretStr = SecretStr("")
    key_cache_ttl_seconds: float = Field(default=60.0, ge=0)

    # Projections (read models) and their query API.
    query_host: str = "127.0.0.1"
    query_port: int = Field(default=8001, ge=1, le=65535)
    read_your_writes_timeout_seconds: float = Field(default=2.0, ge=0, le=30)
    dead_letter_topic: str = "kontakt.dead-letters"
    projection_max_attempts: int = Field(default=5, ge=1, le=100)
    # Longest wait between tries while a server (PostgreSQL, Kafka, contacts API) is down.
    projection_backoff_max_seconds: float = Field(default=30.0, gt=0, le=600)
    # Token the projection worker sends to the contacts API when it repairs a contact from
    # the store; minted from the JWT key for projection_service_subject if unset.
    projection_service_token: SecretStr | None = None
    projection_service_subject: str = "kontakt-projections"

    # Outlook sync (services/sync): its fields are kept together in this block.
    # Graph: the authority and base URL are configuration only (the real ones by default).
    sync_graph_base_url: str = "https://graph.microsoft.com/v1.0"
    sync_graph_authority: str = "https://login.microsoftonline.com"
    sync_graph_tenant_id: str = "common"
    sync_graph_client_id: str = ""
    sync_graph_client_secret: SecretStr = SecretStr("")
    sync_graph_scope: str = "https://graph.microsoft.com/.default"
    sync_graph_timeout_seconds: float = Field(default=30.0, gt=0)
    sync_graph_max_attempts: int = Field(default=6, ge=1, le=50)
    sync_graph_backoff_seconds: float = Field(default=0.5, gt=0)
    sync_graph_backoff_max_seconds: float = Field(default=30.0, gt=0)
    # Graph allows at most 4 concurrent requests per mailbox.
    sync_graph_mailbox_concurrency: int = Field(default=4, ge=1, le=4)
    sync_folder_name: str = "Kontakt"
    # Explicit CRM user -> mailbox (UPN) map, JSON: only users in it are synced; any
    # other user's links are reported failed.
    sync_mailboxes: dict[str, str] = Field(default_factory=dict)
    # Development only: while the map is empty, every CRM user's mailbox is
    # sync_mailbox_format (e.g. "{user_id}@example.com") instead.
    sync_dev_mailbox_fallback: bool = False
    sync_mailbox_format: str = "{user_id}"
    sync_events_topic: str = "outlook-sync.events"
    sync_consumer_group: str = "kontakt-outlook-sync"
    # Token of the sync service's principal (role outlook-sync); minted from the JWT key if unset.
    sync_service_token: SecretStr | None = None
    sync_service_subject: str = "outlook-sync"
    contacts_api_url: str = "http://127.0.0.1:8000"
    sync_batch_size: int = Field(default=50, ge=1, le=1000)
    sync_poll_seconds: float = Field(default=0.5, gt=0)
    # A link claimed by a worker that died is taken over after this long.
    sync_lease_seconds: float = Field(default=60.0, gt=0)
    sync_retry_max_seconds: float = Field(default=300.0, gt=0)
    # A message that keeps failing while the database answers is dead-lettered after this.
    sync_max_attempts: int = Field(default=5, ge=1, le=100)
    # How long the worker keeps a person's sync key: bounds how long its copy of an
    # erased person stays readable.
    sync_key_cache_ttl_seconds: float = Field(default=60.0, ge=0)
    # How often each user's folder is listed to notice items the user deleted in Outlook.
    sync_verify_seconds: float = Field(default=300.0, gt=0)
    # The Graph-compatible server for tests and local runs (`kontakt graph-server`).
    sync_graph_server_host: str = "127.0.0.1"
    sync_graph_server_port: int = Field(default=28080, ge=1, le=65535)

    # Web UI (services/web): it reads through the query API and commands through the
    # contacts API (contacts_api_url), with the signed-in user's token.
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8002, ge=1, le=65535)
    query_api_url: str = "http://127.0.0.1:8001"
    # In production a proxy in front signs users in and passes each one's bearer token in
    # this header (the local sign-in page exists only while development secrets are in use).
    web_token_header: str = "X-Forwarded-Access-Token"
    # The time zone the web UI shows times in (an IANA name); the APIs speak UTC.
    web_time_zone: str = "Europe/Copenhagen"

    # Contacts API.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    photo_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    # Request bodies of both APIs (JSON); photo uploads are bounded by photo_max_bytes.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _check_keys(self) -> KontaktSettings:
        for name, key in [("KONTAKT_MASTER_KEY", self.master_key.get_secret_value())] + [
            ("KONTAKT_MASTER_KEYS_PREVIOUS", k) for k in self.previous_master_keys()
        ]:
            try:
                size = len(base64.b64decode(key, validate=True))
            except ValueError:
                raise ValueError(f"{name} must be base64") from None
            if size != 32:
                raise ValueError(f"{name} must be 32 bytes (base64), not {size}")
        if self.jwt_algorithm == "RS256" and not self.jwt_public_key:
            raise ValueError("KONTAKT_JWT_PUBLIC_KEY is required when KONTAKT_JWT_ALGORITHM=RS256")
        if self.jwt_algorithm == "HS256" and len(self.jwt_secret.get_secret_value()) < 32:
            raise ValueError("KONTAKT_JWT_SECRET must be at least 32 characters")
        try:
            ZoneInfo(self.web_time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"KONTAKT_WEB_TIME_ZONE must name an IANA time zone, not {self.web_time_zone!r}"
            ) from None
        return self

    def uses_dev_secrets(self) -> bool:
        """True when a development-only secret is in use."""
        return (
            self.key_secret.get_secret_value() == DEV_KEY_SECRET
            or self.master_key.get_secret_value() == DEV_MASTER_KEY
            or (
                self.jwt_algorithm == "HS256"
                and self.jwt_secret.get_secret_value() == DEV_JWT_SECRET
            )
        )

    def previous_master_keys(self) -> list[str]:
        """The previous master keys, for unwrapping during a rotation."""
        raw = self.master_keys_previous.get_secret_value()
        return [k.strip() for k in raw.split(",") if k.strip()]

    def all_topics(self) -> list[str]:
        """Every topic of the contract: the one we publish and those we consume."""
        return [
            self.contacts_topic,
            self.infotags_topic,
            self.activities_topic,
            self.opportunities_topic,
            self.campaigns_topic,
            self.projects_topic,
        ]

    def pg_dsn(self) -> str:
        """A libpq connection string for the database."""
        return (
            f"postgresql://{self.pg_user}:{self.pg_password.get_secret_value()}"
            f"@{self.pg_host}:{self.pg_port}/{self.pg_database}"
        )

    def pg_address(self) -> str:
        """host:port/database, as status reports name the database a process works on."""
        return f"{self.pg_host}:{self.pg_port}/{self.pg_database}"

    def eventsourcing_env(self) -> dict[str, str]:
        """The environment the eventsourcing library's PostgreSQL persistence reads."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.pg_database,
            "POSTGRES_HOST": self.pg_host,
            "POSTGRES_PORT": str(self.pg_port),
            "POSTGRES_USER": self.pg_user,
            "POSTGRES_PASSWORD": self.pg_password.get_secret_value(),
            "POSTGRES_POOL_SIZE": str(self.pg_pool_size),
            "POSTGRES_MAX_OVERFLOW": str(self.pg_pool_size),
            # The library's insert function skips the table lock, so concurrent saves can
            # commit notification ids out of order and a reader following positions (the
            # relay) skips the earlier one for good: tests/integration/test_notification_log.py.
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            "CREATE_TABLE": "y",
        }
