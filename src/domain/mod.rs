//! Domain types (placeholder)
