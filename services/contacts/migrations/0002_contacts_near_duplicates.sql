-- Backfills the contacts service ran to completion on this database, by name.
-- Near-duplicate keys are aggregates in the event store, keyed by a hash of names folded in
-- Python from encrypted events, so SQL cannot make them: the contacts API joins the keys of
-- contacts stored before them once ('near-duplicate-keys'), then records it here.

CREATE TABLE IF NOT EXISTS contacts_backfills (
    name text PRIMARY KEY,
    completed_at timestamptz NOT NULL DEFAULT now()
);
