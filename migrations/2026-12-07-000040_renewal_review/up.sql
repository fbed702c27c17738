-- Renewal review items (issue 21): `renewal_missing` and
-- `renewal_after_cancel`, raised by the sweep (domain::sweep).
--
-- When the processor says an order of a subscription was paid
-- (PAYMENTDATE, else IPN_DATE of its first paying notice): what a renewal
-- paid after a licence notice said the subscription was disabled or
-- canceled is compared with, both in the processor's time. The earliest
-- wins, so the arrival order does not matter.
ALTER TABLE subscription_orders ADD COLUMN paid_at TIMESTAMP;
-- Rows written before: the IPN_DATE of the order's first paying notice.
UPDATE subscription_orders AS s SET paid_at = p.at
FROM (SELECT processor_ref, min(ipn_date) AS at FROM notifications
      WHERE order_status IN ('COMPLETE', 'PAYMENT_RECEIVED', 'AUTHRECEIVED')
        AND NOT test_order AND NOT fraud_denied AND processor_ref IS NOT NULL
      GROUP BY processor_ref) AS p
WHERE s.paid AND p.processor_ref = s.processor_ref;

-- One open item per cause for the sweep's kinds, the renewal ones too.
DROP INDEX review_items_one_open_sweep_item;
CREATE UNIQUE INDEX review_items_one_open_sweep_item
    ON review_items (kind, order_ref, (coalesce(processor_ref, '')))
    WHERE status = 'open' AND kind IN ('stale_order', 'unsettled_payment', 'refund_not_debited',
                                       'renewal_missing', 'renewal_after_cancel');
