DROP TABLE subscription_orders;
