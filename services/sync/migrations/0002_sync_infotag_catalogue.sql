-- The infotag catalogue (topic infotags.events), so an Outlook item's categories follow a
-- tag's rename or move. sync_contacts.tag_ids names a snapshot's catalogue tags (not
-- personal: they name tags of the catalogue) to find the items a catalogue change shows in;
-- rows written before this migration have none until their contact next changes.

ALTER TABLE sync_contacts ADD COLUMN IF NOT EXISTS tag_ids uuid[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS sync_contacts_tag_ids ON sync_contacts USING gin (tag_ids);
CREATE TABLE IF NOT EXISTS sync_infotags (
    tag_id uuid PRIMARY KEY,
    parent_id uuid,
    name text NOT NULL,
    version bigint NOT NULL
);
