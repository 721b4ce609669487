-- Search by name (ø, æ, å and their spellings folded alike), e-mail, phone and free text,
-- backed by trigram and array indexes. The existing rows get the new keys here, folded by
-- SQL as shared/folding.py folds them; `kontakt projections rebuild contacts` recomputes
-- them with that code itself.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

ALTER TABLE rm.contacts
    ADD COLUMN IF NOT EXISTS free_text text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS phone_digits text[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS phone_tails text[] NOT NULL DEFAULT '{}';

-- fold_name: NFKD, combining marks dropped, case folded, ø/æ/ß/đ/ð/ł spelled out,
-- oe -> o and aa -> a, whitespace collapsed. A temporary function: gone with the session.
CREATE FUNCTION pg_temp.kontakt_fold(value text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT btrim(regexp_replace(
        replace(replace(
            translate(replace(replace(lower(regexp_replace(
                normalize(value, NFKD),
                E'[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]', '', 'g')),
                'ß', 'ss'), 'æ', 'ae'), 'øđðł', 'oddl'),
            'oe', 'o'), 'aa', 'a'),
        E'\\s+', ' ', 'g'))
$$;

-- phone_digits: the digits, without the international (00) or trunk (0) prefix.
CREATE FUNCTION pg_temp.kontakt_phone(value text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN d LIKE '00%' THEN substr(d, 3) WHEN d LIKE '0%' THEN substr(d, 2) ELSE d END
    FROM (SELECT regexp_replace(normalize(value, NFKC), '[^0-9]', '', 'g') AS d) AS digits
$$;

UPDATE rm.contacts SET
    search_text = pg_temp.kontakt_fold(first_names || ' ' || last_names),
    free_text = pg_temp.kontakt_fold(concat_ws(' ',
        NULLIF(job_title, '[erased]'), NULLIF(department, '[erased]'), company_name));

WITH phones AS (
    SELECT DISTINCT c.contact_id, pg_temp.kontakt_phone(p.phone) AS digits
    FROM rm.contacts c, LATERAL (VALUES (c.work_phone), (c.private_phone)) AS p (phone)
    WHERE p.phone IS NOT NULL AND pg_temp.kontakt_phone(p.phone) <> ''
), tails AS (
    -- Without a country code of one to three digits, keeping at least six.
    SELECT DISTINCT contact_id, substr(digits, n + 1) AS tail
    FROM phones, generate_series(1, 3) AS n
    WHERE length(digits) - n >= 6
)
UPDATE rm.contacts c SET
    phone_digits = ARRAY(SELECT digits FROM phones p WHERE p.contact_id = c.contact_id
                         ORDER BY digits),
    phone_tails = ARRAY(SELECT tail FROM tails t WHERE t.contact_id = c.contact_id
                        ORDER BY tail)
WHERE c.contact_id IN (SELECT contact_id FROM phones);

-- The trigram index serves a name's prefix and its words' prefixes alike.
DROP INDEX IF EXISTS rm.contacts_search;
CREATE INDEX IF NOT EXISTS contacts_search_trgm ON rm.contacts USING gin (search_text gin_trgm_ops);
CREATE INDEX IF NOT EXISTS contacts_free_text_trgm ON rm.contacts USING gin (free_text gin_trgm_ops);
CREATE INDEX IF NOT EXISTS contacts_phone_digits ON rm.contacts USING gin (phone_digits);
CREATE INDEX IF NOT EXISTS contacts_phone_tails ON rm.contacts USING gin (phone_tails);
CREATE INDEX IF NOT EXISTS contact_addresses_address_trgm
    ON rm.contact_addresses USING gin (address gin_trgm_ops);

DROP FUNCTION pg_temp.kontakt_fold(text);
DROP FUNCTION pg_temp.kontakt_phone(text);
