-- The contacts service's tables beside the event store: person keys, photos, relay positions.
-- IF NOT EXISTS: a database made before migrations already has them, and is adopted as it is.

CREATE TABLE IF NOT EXISTS person_keys (
    person_id uuid PRIMARY KEY,
    master_key_id text,
    wrapped_key bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz,
    CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);

CREATE TABLE IF NOT EXISTS contact_photos (
    person_id uuid NOT NULL,
    content_hash text NOT NULL,
    media_type text NOT NULL,
    data bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, content_hash)
);

CREATE TABLE IF NOT EXISTS relay_positions (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
