-- An address belongs to a contact for a time: one row per (contact, address, valid_from),
-- valid_to NULL while the contact still holds it. E-mails match a contact by their sent
-- time against these intervals (services/projections/sql/activities.py).
-- Rows made before this migration knew no times: each counts as held from the contact's
-- creation on and not yet given up, which matches as before; `kontakt projections rebuild
-- contacts` derives the exact intervals from the stored events.

ALTER TABLE rm.contact_addresses ADD COLUMN IF NOT EXISTS valid_from timestamptz;
ALTER TABLE rm.contact_addresses ADD COLUMN IF NOT EXISTS valid_to timestamptz;
UPDATE rm.contact_addresses a
SET valid_from = coalesce(c.created_at, c.updated_at, now())
FROM rm.contacts c
WHERE c.contact_id = a.contact_id AND a.valid_from IS NULL;
UPDATE rm.contact_addresses SET valid_from = now() WHERE valid_from IS NULL;
ALTER TABLE rm.contact_addresses ALTER COLUMN valid_from SET NOT NULL;
ALTER TABLE rm.contact_addresses DROP CONSTRAINT IF EXISTS contact_addresses_pkey;
ALTER TABLE rm.contact_addresses ADD CONSTRAINT contact_addresses_pkey
    PRIMARY KEY (contact_id, address, valid_from);
DROP INDEX IF EXISTS rm.contact_addresses_address;
CREATE INDEX IF NOT EXISTS contact_addresses_address
    ON rm.contact_addresses (address, valid_from);
