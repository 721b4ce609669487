-- A later migration: a new column on a table that existed before migrations.
ALTER TABLE rm.contacts ADD COLUMN nickname text NOT NULL DEFAULT '';
CREATE INDEX contacts_nickname ON rm.contacts (nickname);
