-- The finance console: its users, their sessions, failed logins (for the
-- rate limits) and the ledger of what people did through it.
--
-- Nothing here is personal data: a user is a name an administrator chose
-- and an argon2id hash; a session is kept as the SHA-256 of its token (the
-- token itself is only in the browser's cookie); a login attempt is kept as
-- digests of the name typed and of the caller's address, enough to count
-- attempts, not to read them back.

CREATE TABLE console_users (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    role           TEXT NOT NULL CHECK (role IN ('viewer', 'resolver')),
    -- The PHC string of an argon2id hash (algorithm, parameters, salt, hash).
    password_hash  TEXT NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    disabled_at    TIMESTAMPTZ
);

CREATE TABLE console_sessions (
    id             BIGSERIAL PRIMARY KEY,
    -- SHA-256 of the session token: a copy of this table opens no session.
    token_sha256   TEXT NOT NULL UNIQUE CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    user_id        BIGINT NOT NULL REFERENCES console_users (id),
    created_at     TIMESTAMPTZ NOT NULL,
    last_seen_at   TIMESTAMPTZ NOT NULL,
    -- Set by logout, by disabling the user, or when found expired.
    ended_at       TIMESTAMPTZ
);
CREATE INDEX console_sessions_user_idx ON console_sessions (user_id) WHERE ended_at IS NULL;

CREATE TABLE console_login_attempts (
    id               BIGSERIAL PRIMARY KEY,
    -- SHA-256 digests (hex) of the name as typed (lower-cased) and of the
    -- caller's address.
    username_sha256  TEXT NOT NULL CHECK (username_sha256 ~ '^[0-9a-f]{64}$'),
    address_sha256   TEXT NOT NULL CHECK (address_sha256 ~ '^[0-9a-f]{64}$'),
    succeeded        BOOLEAN NOT NULL,
    at               TIMESTAMPTZ NOT NULL
);
CREATE INDEX console_login_attempts_user_idx ON console_login_attempts (username_sha256, at);
CREATE INDEX console_login_attempts_address_idx ON console_login_attempts (address_sha256, at);

-- What people did through the console, with their name: logins, logouts,
-- resolutions, requeues. Append-only, like the order ledger.
CREATE TABLE console_actions (
    id          BIGSERIAL PRIMARY KEY,
    user_name   TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN (
                    'login', 'logout', 'resolve_review', 'requeue_parked')),
    -- What it was done to: `#12`, a parked message's id, `reason=... since=...`.
    subject     TEXT,
    -- References and counts only, never personal data.
    details     TEXT,
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX console_actions_at_idx ON console_actions (at);

CREATE FUNCTION console_actions_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'console_actions is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER console_actions_no_update BEFORE UPDATE OR DELETE ON console_actions
    FOR EACH ROW EXECUTE FUNCTION console_actions_append_only();
CREATE TRIGGER console_actions_no_truncate BEFORE TRUNCATE ON console_actions
    FOR EACH STATEMENT EXECUTE FUNCTION console_actions_append_only();
