-- A contact version made by a job change that was undone is withdrawn (JobChangeWithdrawn):
-- its status reads "withdrawn". No version was withdrawn before this migration.

ALTER TABLE rm.contacts ADD COLUMN IF NOT EXISTS withdrawn boolean NOT NULL DEFAULT false;
