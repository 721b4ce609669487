-- A placement names the catalogue tag it is (contract: InfotagAdded.data.tag_id), so a
-- client resolves its current name and path through the contacts API's GET /infotags.
-- Rows made before this migration carry none; `kontakt projections rebuild contacts`
-- derives them from the stored events (placements by name before the catalogue stay NULL).

ALTER TABLE rm.infotags ADD COLUMN IF NOT EXISTS tag_id uuid;
CREATE INDEX IF NOT EXISTS infotags_tag_id ON rm.infotags (tag_id);
