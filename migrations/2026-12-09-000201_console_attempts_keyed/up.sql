-- Issue 23, item 2: login attempts are counted under HMAC-SHA256 digests
-- keyed with the console's own key (`console-key-file`), no longer plain
-- SHA-256 ones (an address or a name is found again from a plain digest
-- by hashing every candidate). The plain digests kept so far cannot be
-- compared with the keyed ones and are read back too easily: they go.
-- Attempts are pruned once their window has passed; the index on `at`
-- serves that.
DELETE FROM console_login_attempts;

COMMENT ON COLUMN console_login_attempts.username_sha256 IS
    'HMAC-SHA256 (hex), keyed with console-key-file, of the name as typed (trimmed, lower-cased)';
COMMENT ON COLUMN console_login_attempts.address_sha256 IS
    'HMAC-SHA256 (hex), keyed with console-key-file, of the caller''s address (an IPv6 address''s /64)';

CREATE INDEX console_login_attempts_at_idx ON console_login_attempts (at);
