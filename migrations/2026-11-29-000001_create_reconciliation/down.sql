DROP TABLE review_items;
DROP TABLE order_events;
DROP FUNCTION order_events_append_only() CASCADE;
DROP TABLE notifications;
DROP TABLE orders;
