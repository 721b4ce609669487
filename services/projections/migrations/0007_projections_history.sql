-- The History tab ("Mere..."): one row per contact event, with who made it, when, through
-- which channel, and what it changed field by field (`changes`: [{"field", "old", "new"}],
-- services/projections/history_model.py); `photo` is the photo the event made current, the
-- photo list's source. Field provenance is derived from these rows. An erasure blanks the
-- personal values of every row of the contact. In schema rm, so a rebuild makes and swaps it
-- with the contacts. Contacts projected before this migration have no rows yet:
-- `kontakt projections rebuild contacts` derives them from the stored events.
-- (0005 is reserved for another change.)

CREATE TABLE IF NOT EXISTS rm.contact_history (
    contact_id uuid NOT NULL,
    aggregate_version integer NOT NULL,
    type text NOT NULL,
    actor text NOT NULL,
    channel text NOT NULL,
    occurred_at timestamptz NOT NULL,
    changes jsonb NOT NULL,
    photo jsonb,
    PRIMARY KEY (contact_id, aggregate_version)
);
