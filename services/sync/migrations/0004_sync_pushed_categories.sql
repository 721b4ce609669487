-- The hash of the categories Kontakt last wrote on each item: an update whose own
-- categories did not change leaves the item's categories alone, so it need not read
-- them first. NULL (links from before): the next update reads and merges them.

ALTER TABLE sync_links ADD COLUMN IF NOT EXISTS pushed_categories text;
