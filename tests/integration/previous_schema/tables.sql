-- The tables as the version before migrations made them at start-up (its CREATE statements,
-- module by module), for the test that a migration adopts such a database.

-- services/contacts/personal_data.py
CREATE TABLE IF NOT EXISTS person_keys (
    person_id uuid PRIMARY KEY,
    master_key_id text,
    wrapped_key bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz,
    CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);

-- services/contacts/photos.py
CREATE TABLE IF NOT EXISTS contact_photos (
    person_id uuid NOT NULL,
    content_hash text NOT NULL,
    media_type text NOT NULL,
    data bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, content_hash)
);

-- services/contacts/relay.py
CREATE TABLE IF NOT EXISTS relay_positions (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- services/projections/sql/contacts.py
CREATE SCHEMA IF NOT EXISTS rm;
CREATE TABLE IF NOT EXISTS rm.contacts (
    contact_id uuid PRIMARY KEY,
    person_id uuid NOT NULL,
    version integer NOT NULL,
    position bigint NOT NULL,
    status text NOT NULL,
    company_id uuid NOT NULL,
    company_name text NOT NULL,
    first_names text NOT NULL,
    last_names text NOT NULL,
    search_text text NOT NULL,
    job_title text,
    department text,
    work_email text,
    private_email text,
    work_phone text,
    private_phone text,
    started_on date,
    ended_on date,
    predecessor_id uuid,
    successor_id uuid,
    archived boolean NOT NULL,
    erased boolean NOT NULL,
    photo jsonb,
    outlook_sync_users text[] NOT NULL,
    created_at timestamptz,
    updated_at timestamptz
);
CREATE INDEX IF NOT EXISTS contacts_person ON rm.contacts (person_id);
CREATE INDEX IF NOT EXISTS contacts_company ON rm.contacts (company_id, status);
CREATE INDEX IF NOT EXISTS contacts_search ON rm.contacts (search_text text_pattern_ops);
CREATE INDEX IF NOT EXISTS contacts_names ON rm.contacts (last_names, first_names, contact_id);
CREATE TABLE IF NOT EXISTS rm.infotags (
    contact_id uuid NOT NULL,
    tag text NOT NULL,
    added_by text NOT NULL,
    added_at timestamptz NOT NULL,
    PRIMARY KEY (contact_id, tag)
);
CREATE INDEX IF NOT EXISTS infotags_tag ON rm.infotags (tag);
CREATE TABLE IF NOT EXISTS rm.contact_addresses (
    contact_id uuid NOT NULL,
    person_id uuid NOT NULL,
    address text NOT NULL,
    PRIMARY KEY (contact_id, address)
);
CREATE INDEX IF NOT EXISTS contact_addresses_address ON rm.contact_addresses (address);
CREATE TABLE IF NOT EXISTS rm.erased_addresses (
    address_hash text PRIMARY KEY
);

-- services/projections/sql/activities.py
CREATE SCHEMA IF NOT EXISTS ledger;
CREATE TABLE IF NOT EXISTS ledger.emails (
    message_id text PRIMARY KEY,
    event_id uuid NOT NULL,
    from_address text NOT NULL,
    to_addresses text[] NOT NULL,
    cc_addresses text[] NOT NULL,
    subject text NOT NULL,
    sent_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS emails_sent ON ledger.emails (sent_at DESC, message_id);
CREATE TABLE IF NOT EXISTS ledger.email_addresses (
    message_id text NOT NULL,
    address text NOT NULL,
    role text NOT NULL,
    PRIMARY KEY (message_id, address, role)
);
CREATE INDEX IF NOT EXISTS email_addresses_address ON ledger.email_addresses (address);

-- services/projections/sql/items.py
CREATE SCHEMA IF NOT EXISTS ledger;
CREATE TABLE IF NOT EXISTS ledger.items (
    kind text NOT NULL,
    item_id uuid NOT NULL,
    title text,
    title_at timestamptz,
    status text,
    status_at timestamptz,
    closed boolean NOT NULL DEFAULT false,
    outcome text,
    closed_at timestamptz,
    PRIMARY KEY (kind, item_id)
);
CREATE TABLE IF NOT EXISTS ledger.item_links (
    kind text NOT NULL,
    item_id uuid NOT NULL,
    contact_id uuid NOT NULL,
    linked boolean NOT NULL,
    role text,
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (kind, item_id, contact_id)
);
CREATE INDEX IF NOT EXISTS item_links_contact ON ledger.item_links (contact_id, kind);

-- services/projections/sql/sync_status.py
CREATE SCHEMA IF NOT EXISTS ledger;
CREATE TABLE IF NOT EXISTS ledger.outlook_sync_status (
    user_id text NOT NULL,
    person_id uuid NOT NULL,
    contact_id uuid NOT NULL,
    status text NOT NULL,
    reason text,
    sequence bigint NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, person_id)
);

-- services/projections/dlq.py
CREATE SCHEMA IF NOT EXISTS ledger;
CREATE TABLE IF NOT EXISTS ledger.dead_letter_resubmits (
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    resubmitted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, "offset")
);

-- services/sync/store.py
CREATE TABLE IF NOT EXISTS sync_contacts (
    contact_id uuid PRIMARY KEY,
    person_id uuid NOT NULL,
    version integer NOT NULL,
    status text NOT NULL,
    company_name text NOT NULL,
    details jsonb NOT NULL,
    infotags jsonb NOT NULL,
    photo_hash text,
    successor_id uuid
);
-- The personal fields (company name, details, infotags), sealed under the person's
-- sync key; the plain columns hold placeholders (rows written before sealing: values).
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
