-- Tamper evidence (issue 23, item 7; docs/operations.md, "Tamper
-- evidence").
--
-- Every append-only table carries a hash chain: each row's `chain_digest`
-- is the SHA-256 (hex) of the previous row's digest in its chain followed
-- by the row's canonical content, and `chain_seq` numbers the rows of the
-- chain from 1. The canonical content is the row as JSON without the two
-- chain columns and without null values:
--
--     jsonb_strip_nulls(to_jsonb(row) - 'chain_seq' - 'chain_digest')::text
--
-- with times written in UTC (jsonb's text is deterministic: keys sorted,
-- one spacing). Nulls are left out so that a nullable column added later
-- leaves the digests of older rows as they were; a column added with a
-- non-null value must re-seal its table (`audit_chain_reseal`, below).
-- Nothing in these tables is updated after it is written (their
-- `*_no_update` triggers refuse it), and the columns the database sets
-- at insert (money_movements.occurred_at/booked_at, the books_open_from
-- of settlement lines and payouts) are set by triggers that fire before
-- the seal (triggers fire in name order: the seal's name sorts last), so
-- the whole row is sealed.
--
-- Chains are per order for the ledger and its money (the worker already
-- serialises an order's writes with the order's row lock), per order
-- reference for resolutions (the system closes an order's items in the
-- order's transaction), per settlement batch for its lines and payouts,
-- and one chain each for the action log and the closes of the books. The
-- last seal of each chain is kept in `audit_chain_heads`, so removing the
-- newest rows of a chain is seen too; its row lock serialises the writers
-- of one chain.
--
-- `audit verify` recomputes every chain with built-in functions only (not
-- with the functions below, which an owner could replace).

-- The chained tables and the column that names their chain (NULL: one
-- chain for the table).
CREATE TABLE audit_chains (
    chain_table  TEXT PRIMARY KEY,
    key_column   TEXT
);
INSERT INTO audit_chains (chain_table, key_column) VALUES
    ('order_events', 'order_id'),
    ('money_movements', 'order_id'),
    ('review_resolutions', 'order_ref'),
    ('console_actions', NULL),
    ('settlement_lines', 'batch_id'),
    ('settlement_payouts', 'batch_id'),
    ('books_closes', NULL);

-- The last row of every chain: its number and its digest.
CREATE TABLE audit_chain_heads (
    chain_table  TEXT NOT NULL REFERENCES audit_chains (chain_table),
    chain_key    TEXT NOT NULL,
    seq          BIGINT NOT NULL CHECK (seq >= 1),
    digest       TEXT NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    PRIMARY KEY (chain_table, chain_key)
);

-- The canonical content of a row (see above); times must already be in
-- UTC (the callers set the time zone).
CREATE FUNCTION audit_chain_content(line jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT jsonb_strip_nulls(line - 'chain_seq' - 'chain_digest')::text
$$;

-- A row's digest: SHA-256 of the previous digest (hex; nothing for the
-- first row of a chain) followed by the row's content.
CREATE FUNCTION audit_chain_digest(prev text, content text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(coalesce(prev, '') || content, 'UTF8')), 'hex')
$$;

-- Seals a new row: BEFORE INSERT, the chain's key column as the
-- argument (none: one chain). SECURITY DEFINER so that the daemon's role
-- can extend the chains without the right to rewrite their heads.
-- `ipn.hash_chains = off` (a benchmark's comparison only, never in
-- production) leaves rows unsealed, which `audit verify` reports.
CREATE FUNCTION audit_chain_seal() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET timezone = 'UTC' AS $$
DECLARE
    line jsonb;
    content text;
    chain text := '';
BEGIN
    IF current_setting('ipn.hash_chains', true) = 'off' THEN
        NEW.chain_seq := NULL;
        NEW.chain_digest := NULL;
        RETURN NEW;
    END IF;
    line := to_jsonb(NEW);
    IF TG_NARGS > 0 THEN
        chain := coalesce(line ->> TG_ARGV[0], '');
    END IF;
    content := audit_chain_content(line);
    INSERT INTO audit_chain_heads AS h (chain_table, chain_key, seq, digest)
    VALUES (TG_TABLE_NAME, chain, 1, audit_chain_digest(NULL, content))
    ON CONFLICT (chain_table, chain_key) DO UPDATE
        SET seq = h.seq + 1, digest = audit_chain_digest(h.digest, content)
    RETURNING h.seq, h.digest INTO NEW.chain_seq, NEW.chain_digest;
    RETURN NEW;
END;
$$;

-- Re-seals every chain of a chained table from its rows as they are now,
-- in their chain order (rows never sealed last, by id): for this
-- migration's backfill, and for a later migration that adds a column
-- with a non-null value to a chained table. Only the owner can run it
-- (it lifts the table's append-only trigger for the rewrite); run
-- `audit verify` before such a migration, since whatever the rows hold
-- then is what gets sealed.
CREATE FUNCTION audit_chain_reseal(tab text) RETURNS bigint
    LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    key_column text;
    r record;
    chain text := NULL;
    digest text;
    seq bigint := 0;
    sealed bigint := 0;
    ids bigint[] := '{}';
    seqs bigint[] := '{}';
    digests text[] := '{}';
BEGIN
    SELECT c.key_column INTO key_column FROM audit_chains AS c WHERE c.chain_table = tab;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a chained table (audit_chains)', tab;
    END IF;
    EXECUTE format('ALTER TABLE %I DISABLE TRIGGER %I', tab, tab || '_no_update');
    DELETE FROM audit_chain_heads WHERE chain_table = tab;
    FOR r IN EXECUTE format(
        'SELECT t.id, %s AS chain, audit_chain_content(to_jsonb(t)) AS content FROM %I AS t '
        'ORDER BY 2, t.chain_seq NULLS LAST, t.id',
        CASE WHEN key_column IS NULL THEN ''''''
             ELSE format('coalesce(to_jsonb(t) ->> %L, '''')', key_column) END,
        tab)
    LOOP
        IF chain IS DISTINCT FROM r.chain THEN
            IF chain IS NOT NULL THEN
                INSERT INTO audit_chain_heads VALUES (tab, chain, seq, digest);
            END IF;
            chain := r.chain;
            seq := 0;
            digest := NULL;
        END IF;
        seq := seq + 1;
        digest := audit_chain_digest(digest, r.content);
        ids := ids || r.id;
        seqs := seqs || seq;
        digests := digests || digest;
        sealed := sealed + 1;
        IF cardinality(ids) >= 10000 THEN
            EXECUTE format('UPDATE %I AS t SET chain_seq = v.seq, chain_digest = v.digest '
                           'FROM unnest($1, $2, $3) AS v (id, seq, digest) WHERE t.id = v.id', tab)
                USING ids, seqs, digests;
            ids := '{}';
            seqs := '{}';
            digests := '{}';
        END IF;
    END LOOP;
    IF chain IS NOT NULL THEN
        INSERT INTO audit_chain_heads VALUES (tab, chain, seq, digest);
    END IF;
    IF cardinality(ids) > 0 THEN
        EXECUTE format('UPDATE %I AS t SET chain_seq = v.seq, chain_digest = v.digest '
                       'FROM unnest($1, $2, $3) AS v (id, seq, digest) WHERE t.id = v.id', tab)
            USING ids, seqs, digests;
    END IF;
    EXECUTE format('ALTER TABLE %I ENABLE TRIGGER %I', tab, tab || '_no_update');
    RETURN sealed;
END;
$$;

-- The chain columns, the seal, and the rows already there sealed in id
-- order.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT chain_table, key_column FROM audit_chains ORDER BY chain_table LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN chain_seq BIGINT, ADD COLUMN chain_digest TEXT',
                       c.chain_table);
        EXECUTE format('CREATE TRIGGER zz_audit_chain_seal BEFORE INSERT ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION audit_chain_seal(%s)',
                       c.chain_table, coalesce(quote_literal(c.key_column), ''));
        PERFORM audit_chain_reseal(c.chain_table);
    END LOOP;
END;
$$;

-- `books close` locks the tables money is written to while it records a
-- close (store::books); LOCK TABLE in those modes needs the right to
-- update them, which the daemon's role does not have, so the locks are
-- taken here, with the owner's rights.
CREATE FUNCTION books_lock_for_close() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    LOCK TABLE books_closes IN EXCLUSIVE MODE;
    LOCK TABLE money_movements, settlement_lines, settlement_payouts IN SHARE ROW EXCLUSIVE MODE;
END;
$$;
REVOKE EXECUTE ON FUNCTION books_lock_for_close() FROM PUBLIC;

-- The daemon's role, `ipn_daemon` (docs/operations.md, "The daemon's
-- database role"): it reads and adds rows everywhere and changes or
-- removes rows of the working tables, but cannot UPDATE, DELETE or
-- TRUNCATE a chained table, nor touch the chain heads: those rights stay
-- with the owner, who runs the migrations. Tables made by later
-- migrations get the same rights by default; one that is append-only
-- must revoke them in its migration, as here. Run it again (as the
-- owner) after creating the role by hand.
CREATE FUNCTION ipn_daemon_grants() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    schema_name text := current_schema();
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO ipn_daemon', schema_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO ipn_daemon',
                   schema_name);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO ipn_daemon', schema_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                   'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ipn_daemon', schema_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                   'GRANT USAGE, SELECT ON SEQUENCES TO ipn_daemon', schema_name);
    REVOKE UPDATE, DELETE, TRUNCATE ON order_events, money_movements, review_resolutions,
        console_actions, settlement_lines, settlement_payouts, books_closes FROM ipn_daemon;
    REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_chains, audit_chain_heads,
        __diesel_schema_migrations FROM ipn_daemon;
    GRANT EXECUTE ON FUNCTION books_lock_for_close() TO ipn_daemon;
END;
$$;

-- Roles belong to the whole server and tests make many databases at
-- once: create it unless it is there (or being created beside us), and
-- leave it to an administrator when the owner may not create roles.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ipn_daemon') THEN
        BEGIN
            CREATE ROLE ipn_daemon NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE WARNING 'cannot create role ipn_daemon: create it as an administrator '
                              '(CREATE ROLE ipn_daemon NOLOGIN), then run '
                              'SELECT ipn_daemon_grants() as the owner';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ipn_daemon') THEN
        PERFORM ipn_daemon_grants();
    END IF;
END;
$$;
