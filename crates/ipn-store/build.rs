// `embed_migrations!` includes each migration's SQL, so a changed file
// rebuilds the crate, but not a new migration directory: watch the whole
// top-level migrations/ (the workspace's, shared with the root package).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
