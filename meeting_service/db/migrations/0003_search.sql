-- Full-text search over the final segments of the transcript (docs/search.md).
--
-- `segments` keeps the searchable fields of each segment's current version beside its
-- payload; the database derives the text search vector from them, so no writer can forget
-- to. Segments stored before this migration have empty fields and are found once they are
-- written again.

-- Languages (ISO 639-1, the first part of a BCP-47 code) with a text search configuration
-- of this server; any other language is searched with `simple` (no stemming, no stop
-- words). Names, not regconfig OIDs, so pg_upgrade can carry the table. search_config()
-- below is made from it: a change here is a migration that makes the function again.
CREATE TABLE search_configs (
    language  text PRIMARY KEY,
    config    text NOT NULL
);

INSERT INTO search_configs (language, config)
SELECT v.language, c.cfgname
FROM (VALUES
    ('ar', 'arabic'), ('ca', 'catalan'), ('da', 'danish'), ('de', 'german'),
    ('el', 'greek'), ('en', 'english'), ('es', 'spanish'), ('eu', 'basque'),
    ('fi', 'finnish'), ('fr', 'french'), ('ga', 'irish'), ('hi', 'hindi'),
    ('hu', 'hungarian'), ('hy', 'armenian'), ('id', 'indonesian'), ('it', 'italian'),
    ('lt', 'lithuanian'), ('nb', 'norwegian'), ('ne', 'nepali'), ('nl', 'dutch'),
    ('nn', 'norwegian'), ('no', 'norwegian'), ('pt', 'portuguese'), ('ro', 'romanian'),
    ('ru', 'russian'), ('sr', 'serbian'), ('sv', 'swedish'), ('ta', 'tamil'),
    ('tr', 'turkish'), ('yi', 'yiddish')
) AS v (language, config)
JOIN pg_ts_config c ON c.cfgname = v.config AND c.cfgnamespace = 'pg_catalog'::regnamespace;

ALTER TABLE segments
    ADD COLUMN text           text NOT NULL DEFAULT '',
    ADD COLUMN speaker        text NOT NULL DEFAULT '',
    ADD COLUMN start_us       bigint NOT NULL DEFAULT 0,
    ADD COLUMN end_us         bigint NOT NULL DEFAULT 0,
    ADD COLUMN final          boolean NOT NULL DEFAULT false,
    -- The segment's language, else its meeting's (the writer fills it in).
    ADD COLUMN language       text NOT NULL DEFAULT '',
    -- Set by segments_search_vector(): the configuration the vector was made with (the
    -- query is parsed with the same one), and the vector; NULL for partial segments, so a
    -- hypothesis that a final version will replace is never found.
    ADD COLUMN search_config  text,
    ADD COLUMN search_vector  tsvector;

CREATE INDEX segments_search ON segments USING gin (search_vector);

-- The table as an expression: a trigger that queried the table paid a statement per row
-- (several times the cost of the vector itself); a CASE is evaluated in place.
DO $$
BEGIN
    EXECUTE format(
        'CREATE FUNCTION search_config(language text) RETURNS text'
        ' LANGUAGE sql IMMUTABLE PARALLEL SAFE'
        ' RETURN CASE lower(split_part(replace(language, ''_'', ''-''), ''-'', 1)) %s'
        ' ELSE ''simple'' END',
        (SELECT string_agg(format('WHEN %L THEN %L', language, config), ' ' ORDER BY language)
         FROM search_configs));
END
$$;

CREATE FUNCTION segments_search_vector() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT NEW.final THEN
        NEW.search_config := NULL;
        NEW.search_vector := NULL;
        RETURN NEW;
    END IF;
    -- Diarization sends every segment again with its speaker: the words did not change,
    -- so neither does the vector.
    IF TG_OP = 'UPDATE' AND OLD.search_vector IS NOT NULL
            AND OLD.text = NEW.text AND OLD.language = NEW.language THEN
        NEW.search_config := OLD.search_config;
        NEW.search_vector := OLD.search_vector;
        RETURN NEW;
    END IF;
    NEW.search_config := search_config(NEW.language);
    NEW.search_vector := to_tsvector(NEW.search_config::regconfig, NEW.text);
    RETURN NEW;
END
$$;

CREATE TRIGGER segments_search_vector
    BEFORE INSERT OR UPDATE ON segments
    FOR EACH ROW EXECUTE FUNCTION segments_search_vector();
