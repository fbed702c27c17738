//! An error's text with its causes, for logs and `/readyz`: the store
//! reports its outages with it, and the daemon's broker side too (the
//! daemon's `telemetry::with_causes`).

/// An error's text followed by its causes', each once: what a log line or
/// `/readyz` should say. Libraries often put the useful part in a cause
/// ("IO error" over "connection refused", deadpool's "error occurred while
/// creating a new object" over what the server said).
pub fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text = format!("{text}: {inner_text}");
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("error connecting to server")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn causes_follow_the_error_each_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            with_causes(&Outer(Inner(refused))),
            "outer: error connecting to server: refused"
        );
    }
}
