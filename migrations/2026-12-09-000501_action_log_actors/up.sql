-- Issue 23, item 5: who did what, provably.
--
-- `console_actions` stays the one action log, for the console and the
-- command line alike: every money- or queue-moving action (a review
-- resolution, a requeue, a close or reopen of the books, a settlement
-- import, a change of a console user, a link_order's request and its
-- confirmation) writes its row in the transaction that does the effect.
-- A row names the actor: `user_name` is the console user, or for the
-- command line the name given with `--by`; `source` says which, and for
-- the command line `os_user` and `host` are the operating-system account
-- and machine it ran under (read by the program, not typed).

ALTER TABLE console_actions
    ADD COLUMN source TEXT NOT NULL DEFAULT 'console' CHECK (source IN ('console', 'cli')),
    ADD COLUMN os_user TEXT,
    ADD COLUMN host TEXT;
ALTER TABLE console_actions ALTER COLUMN source DROP DEFAULT;
ALTER TABLE console_actions ADD CONSTRAINT console_actions_machine_of_cli
    CHECK (source = 'cli' OR (os_user IS NULL AND host IS NULL));

ALTER TABLE console_actions DROP CONSTRAINT console_actions_action_check;
ALTER TABLE console_actions ADD CONSTRAINT console_actions_action_check CHECK (action IN (
    'login', 'logout', 'resolve_review', 'requeue_parked',
    'books_close', 'books_reopen', 'settlement_import',
    'user_add', 'user_disable',
    'request_link_order', 'confirm_link_order'));

-- A link_order above `four-eyes-amount` waits here until a second,
-- different resolver confirms it in the console; only then does the money
-- move (and the item resolve). At most one request waits per item.
CREATE TABLE link_order_requests (
    id              BIGSERIAL PRIMARY KEY,
    review_item_id  BIGINT NOT NULL REFERENCES review_items (id),
    -- The order the orphan's money is to be linked to.
    order_ref       TEXT NOT NULL,
    -- The money that would move, checked against the order's open balance
    -- when asked and again when confirmed.
    amount_minor    BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency        TEXT NOT NULL,
    requested_by    TEXT NOT NULL,
    source          TEXT NOT NULL CHECK (source IN ('console', 'cli')),
    note            TEXT NOT NULL,
    grouped         BOOLEAN NOT NULL DEFAULT false,
    requested_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- `pending` until confirmed, or `superseded` when the item was
    -- resolved otherwise.
    status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'confirmed', 'superseded')),
    confirmed_by    TEXT,
    confirmed_at    TIMESTAMPTZ,
    CHECK ((status = 'confirmed') = (confirmed_by IS NOT NULL AND confirmed_at IS NOT NULL)),
    CHECK (confirmed_by IS NULL OR confirmed_by <> requested_by)
);
CREATE UNIQUE INDEX link_order_requests_one_pending
    ON link_order_requests (review_item_id) WHERE status = 'pending';

-- The rows written before carry `source = 'console'` now: their chain
-- (migration 2026-12-09-000400) is sealed again over what they hold.
SELECT audit_chain_reseal('console_actions');
