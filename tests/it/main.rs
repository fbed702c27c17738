//! The integration tests, in one binary (one link instead of thirteen on a
//! two-core machine). They talk to the real PostgreSQL and RabbitMQ: each
//! test makes a database and broker names of its own (see [`helpers`]), so
//! they run in parallel and leave nothing behind.

mod helpers;

mod actors;
mod allowed_currency;
mod audit;
mod batch_apply;
mod bench_smoke;
mod books_close;
mod bound_names;
mod broker_privacy;
mod chargebacks;
mod clearing;
mod cli_check;
mod cli_finance;
mod cli_ipn;
mod cli_listings;
mod cli_reconcile;
mod console_browser;
mod console_http;
mod demo;
mod docs;
mod fault_volume;
mod finance_metrics;
mod finance_notice_money;
mod finance_report;
mod hostile_delivery;
mod intake;
mod intake_transport;
mod ipn_properties;
mod ipn_vectors;
mod journal;
mod licence_notices;
mod metrics_exported;
mod network_faults;
mod operators;
mod outages;
mod payout_matching;
mod processor_api;
mod processor_orders;
mod renewals;
mod report_timezone;
mod review_actions;
mod review_bookings;
mod seal_key;
mod service_restarts;
mod settlement;
mod settlement_mapping;
mod simulate_cli;
mod simulate_replay;
mod simulate_targets;
mod store_reconcile;
mod subscriptions;
mod sweep;
mod worker_daemon;
mod worker_flow;
