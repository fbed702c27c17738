-- The role stays (it belongs to the whole server); its rights in this
-- database go.
DO $$
DECLARE
    schema_name text := current_schema();
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ipn_daemon') THEN
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                       'REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM ipn_daemon',
                       schema_name);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                       'REVOKE USAGE, SELECT ON SEQUENCES FROM ipn_daemon', schema_name);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM ipn_daemon', schema_name);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM ipn_daemon', schema_name);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM ipn_daemon', schema_name);
        REVOKE ALL ON FUNCTION books_lock_for_close() FROM ipn_daemon;
    END IF;
END;
$$;
DROP FUNCTION ipn_daemon_grants();
DROP FUNCTION books_lock_for_close();

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT chain_table FROM audit_chains LOOP
        EXECUTE format('DROP TRIGGER zz_audit_chain_seal ON %I', c.chain_table);
        EXECUTE format('ALTER TABLE %I DROP COLUMN chain_seq, DROP COLUMN chain_digest',
                       c.chain_table);
    END LOOP;
END;
$$;
DROP FUNCTION audit_chain_reseal(text);
DROP FUNCTION audit_chain_seal();
DROP FUNCTION audit_chain_digest(text, text);
DROP FUNCTION audit_chain_content(jsonb);
DROP TABLE audit_chain_heads;
DROP TABLE audit_chains;
