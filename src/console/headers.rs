//! The headers every console response carries.
//!
//! - `Content-Security-Policy`: scripts, styles and images only from the
//!   console itself, no inline script or style, no plugins, no framing,
//!   forms only to the console, no `<base>`;
//! - `X-Frame-Options: DENY` (for browsers older than `frame-ancestors`);
//! - `X-Content-Type-Options: nosniff`;
//! - `Referrer-Policy: no-referrer`: an order reference in a URL stays
//!   here;
//! - `Cache-Control: no-store`: pages of the books are not kept by the
//!   browser or a proxy after logout.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::middleware::Next;
use axum::response::Response;

/// The console's content security policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Adds the security headers to every response.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
