-- The contacts API's infotag catalogue (topic infotags.events), so the Infotags tab and the
-- search show a tag's current path after a rename or move. `path` and `lineage` (the ids
-- from the root down to the tag) are kept for each tag's whole subtree by the worker, so a
-- search by a tag (with its descendants) is one indexed lookup.
-- Filled from the topic, or from the event store by `kontakt projections rebuild contacts`.

CREATE TABLE IF NOT EXISTS rm.infotag_catalogue (
    tag_id uuid PRIMARY KEY,
    parent_id uuid,
    name text NOT NULL,
    active boolean NOT NULL DEFAULT true,
    path text NOT NULL,
    lineage uuid[] NOT NULL,
    version bigint NOT NULL,
    changed_by text NOT NULL,
    changed_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS infotag_catalogue_lineage ON rm.infotag_catalogue USING gin (lineage);
CREATE INDEX IF NOT EXISTS infotag_catalogue_path ON rm.infotag_catalogue (lower(path));
