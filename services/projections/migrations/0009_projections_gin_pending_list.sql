-- A GIN index keeps new entries in a pending list until it holds gin_pending_list_limit
-- (4 MB by default), and every search through the index reads that whole list. After a
-- rebuild's COPY or a day of the worker's upserts it held up to tens of thousands of rows
-- (a phone search on 50,000 contacts read all of them: 40 ms instead of 0.1 ms). The
-- smallest list (64 kB) keeps inserts batched and bounds what a search reads; a rebuild's
-- copy of the tables keeps the setting (its indexes are made from these definitions).
ALTER INDEX rm.contacts_search_trgm SET (gin_pending_list_limit = 64);
ALTER INDEX rm.contacts_free_text_trgm SET (gin_pending_list_limit = 64);
ALTER INDEX rm.contacts_phone_digits SET (gin_pending_list_limit = 64);
ALTER INDEX rm.contacts_phone_tails SET (gin_pending_list_limit = 64);
ALTER INDEX rm.contact_addresses_address_trgm SET (gin_pending_list_limit = 64);
ALTER INDEX rm.infotag_catalogue_lineage SET (gin_pending_list_limit = 64);

-- What the lists hold now goes into the indexes at once (PERFORM: nothing to print).
DO $$
BEGIN
    PERFORM gin_clean_pending_list(i::regclass) FROM unnest(ARRAY[
        'rm.contacts_search_trgm', 'rm.contacts_free_text_trgm', 'rm.contacts_phone_digits',
        'rm.contacts_phone_tails', 'rm.contact_addresses_address_trgm',
        'rm.infotag_catalogue_lineage'
    ]) AS i;
END
$$;
