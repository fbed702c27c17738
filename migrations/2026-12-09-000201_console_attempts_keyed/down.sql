DROP INDEX console_login_attempts_at_idx;
COMMENT ON COLUMN console_login_attempts.username_sha256 IS NULL;
COMMENT ON COLUMN console_login_attempts.address_sha256 IS NULL;
