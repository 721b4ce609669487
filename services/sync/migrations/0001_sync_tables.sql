-- The Outlook sync's tables: contact snapshots, each user's links, the outcome outbox.
-- IF NOT EXISTS: a database made before migrations already has them, and is adopted as it is.

CREATE TABLE IF NOT EXISTS sync_contacts (
    contact_id uuid PRIMARY KEY,
    person_id uuid NOT NULL,
    version integer NOT NULL,
    status text NOT NULL,
    company_name text NOT NULL,
    details jsonb NOT NULL,
    infotags jsonb NOT NULL,
    photo_hash text,
    successor_id uuid,
    -- The personal fields (company name, details, infotags), sealed under the person's
    -- sync key; the plain columns hold placeholders (rows written before sealing: values).
    sealed bytea
);
-- Tables made before sealing lack the column.
ALTER TABLE sync_contacts ADD COLUMN IF NOT EXISTS sealed bytea;
CREATE INDEX IF NOT EXISTS sync_contacts_person ON sync_contacts (person_id);
CREATE TABLE IF NOT EXISTS sync_links (
    user_id text NOT NULL,
    person_id uuid NOT NULL,
    contact_id uuid NOT NULL,
    wanted boolean NOT NULL DEFAULT false,
    state text NOT NULL DEFAULT 'off',
    graph_id text,
    pushed_hash text,
    pushed_photo text,
    reason text,
    suppressed boolean NOT NULL DEFAULT false,
    suppressed_contact_id uuid,
    suppressed_through_version integer,
    sequence integer NOT NULL DEFAULT 0,
    generation bigint NOT NULL DEFAULT 1,
    synced_generation bigint NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, person_id)
);
CREATE INDEX IF NOT EXISTS sync_links_person ON sync_links (person_id, contact_id);
CREATE INDEX IF NOT EXISTS sync_links_due ON sync_links (next_attempt_at)
    WHERE generation > synced_generation;
CREATE TABLE IF NOT EXISTS sync_outbox (
    id bigserial PRIMARY KEY,
    person_id uuid NOT NULL,
    payload jsonb NOT NULL
);
-- Unreadable messages go to the dead-letter topic now; the old table held error
-- texts that could quote personal data.
DROP TABLE IF EXISTS sync_parked_messages;
