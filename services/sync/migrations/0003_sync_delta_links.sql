-- Where each mailbox's sync folder was last read with Graph's delta query: the deltaLink
-- that returns only what changed since (items the user deleted or moved out come as
-- @removed). A row goes when Graph refuses its link; the folder is then listed in full.

CREATE TABLE IF NOT EXISTS sync_delta_links (
    mailbox text NOT NULL,
    folder_id text NOT NULL,
    delta_link text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox, folder_id)
);
