DROP TABLE console_actions;
DROP FUNCTION console_actions_append_only();
DROP TABLE console_login_attempts;
DROP TABLE console_sessions;
DROP TABLE console_users;
