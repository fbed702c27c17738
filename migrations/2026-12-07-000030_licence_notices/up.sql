-- Licence change notifications (LCN, issue 21): the allow-listed facts of
-- each, once per notice identity. A subscription's status is the status
-- of its notice with the latest DATE_UPDATED, so LCNs give the same state
-- in any arrival order. Test LCNs are never stored. No personal data.
CREATE TABLE licence_notices (
    identity          TEXT PRIMARY KEY CHECK (identity ~ '^[0-9a-f]{64}$'),
    licence_ref       TEXT NOT NULL CHECK (length(licence_ref) BETWEEN 1 AND 64),
    status            TEXT CHECK (length(status) <= 64),
    -- DATE_UPDATED: when the processor logged the change.
    updated_at        TIMESTAMP NOT NULL,
    expires_at        TIMESTAMP,
    lifetime          BOOLEAN NOT NULL DEFAULT FALSE,
    dispatch_reason   TEXT CHECK (length(dispatch_reason) <= 64),
    licence_type      TEXT CHECK (length(licence_type) <= 64),
    recurring         BOOLEAN,
    renewals          INTEGER,
    received_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX licence_notices_licence_idx ON licence_notices (licence_ref, updated_at);
