DROP TABLE link_order_requests;
ALTER TABLE console_actions DROP CONSTRAINT console_actions_action_check;
ALTER TABLE console_actions ADD CONSTRAINT console_actions_action_check CHECK (action IN (
    'login', 'logout', 'resolve_review', 'requeue_parked'));
ALTER TABLE console_actions DROP CONSTRAINT console_actions_machine_of_cli;
ALTER TABLE console_actions DROP COLUMN host, DROP COLUMN os_user, DROP COLUMN source;
SELECT audit_chain_reseal('console_actions');
