-- The read models: contacts (schema rm, which a rebuild copies and swaps), and the ledgers of
-- other services' events (schema ledger: e-mails, items, Outlook sync status, dead-letter
-- re-submits). IF NOT EXISTS: a database made before migrations already has them.

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
CREATE TABLE IF NOT EXISTS ledger.dead_letter_resubmits (
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    resubmitted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, "offset")
);
