//! A faithful stand-in for the processor's REST API (issue 24, Deliver 5,
//! first part): `GET /rest/6.0/orders/{RefNo}/` from a given set of
//! orders, behind the same authentication the processor checks.
//!
//! The `X-Avangate-Authentication` header is checked exactly: an unknown
//! vendor code, a hash that is not the HMAC under the account's secret, or
//! a date more than [`MAX_SKEW`] from this server's clock is answered 401,
//! as the processor answers. The processor documents that clock skew is
//! refused but not by how much (processor-traffic.md §5 cites a 401 on
//! skew without a bound), so 15 minutes is this simulator's choice.
//!
//! It can be told to answer 429 or a 5xx for the next N requests
//! ([`SimulatedApi::fail_next`]), so clients' retries and breakers can be
//! exercised; it counts the requests it saw.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::ipn::{API_AUTH_HEADER, Algorithm, ApiAuth, SecretKey};

/// How far a request's date may be from the server's clock (undocumented
/// by the processor; see the module's text).
pub const MAX_SKEW: chrono::Duration = chrono::Duration::minutes(15);

/// The API's state, shared by the server and whoever steers it.
#[derive(Clone, Default)]
pub struct SimulatedApi {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    vendors: Mutex<HashMap<String, Arc<SecretKey>>>,
    /// The orders' JSON text as given: numbers such as `10.00` are sent
    /// exactly as written (a `serde_json::Value` would make them `10.0`).
    orders: Mutex<HashMap<String, String>>,
    failures: Mutex<Option<(StatusCode, u32)>>,
    requests: AtomicU64,
    authorized: AtomicU64,
}

impl std::fmt::Debug for SimulatedApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedApi")
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

/// A running simulated API.
#[derive(Debug)]
pub struct ApiServer {
    pub addr: SocketAddr,
    pub api: SimulatedApi,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    /// The REST 6.0 base URL, for a client's `api-url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/rest/6.0/", self.addr)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimulatedApi {
    /// An API that knows one account.
    pub fn new(vendor_code: &str, secret: SecretKey) -> Self {
        let api = Self::default();
        api.add_vendor(vendor_code, secret);
        api
    }

    pub fn add_vendor(&self, vendor_code: &str, secret: SecretKey) {
        lock(&self.inner.vendors).insert(vendor_code.to_owned(), Arc::new(secret));
    }

    /// Serves `order`, the JSON text of a REST order object, at its
    /// `RefNo`; refused if it is not an object with one.
    pub fn insert_order(&self, order: impl Into<String>) -> Result<String, String> {
        let order = order.into();
        let value: serde_json::Value =
            serde_json::from_str(&order).map_err(|err| format!("not JSON: {err}"))?;
        let ref_no = match &value["RefNo"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err("an order without a RefNo".to_owned()),
        };
        lock(&self.inner.orders).insert(ref_no.clone(), order);
        Ok(ref_no)
    }

    /// The next `count` requests are answered `status` (429, 500, 503...),
    /// whatever they ask.
    pub fn fail_next(&self, status: u16, count: u32) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        *lock(&self.inner.failures) = Some((status, count));
    }

    /// Requests seen, whatever was answered.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Requests that passed authentication.
    pub fn authorized(&self) -> u64 {
        self.inner.authorized.load(Ordering::Relaxed)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/rest/6.0/orders/{ref_no}/", get(order))
            .with_state(self.clone())
    }

    /// Serves on `addr` (port 0: any free port; the address bound is in
    /// the result).
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<ApiServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let router = self.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(ApiServer {
            addr,
            api: self,
            task,
        })
    }

    /// Whether `headers` carry a valid header of a known account at `now`.
    fn authenticate(&self, headers: &HeaderMap, now: chrono::NaiveDateTime) -> bool {
        let Some(header) = headers
            .get(API_AUTH_HEADER)
            .and_then(|value| value.to_str().ok())
        else {
            return false;
        };
        let Ok(auth) = ApiAuth::parse(header) else {
            return false;
        };
        let Some(secret) = lock(&self.inner.vendors).get(&auth.code).cloned() else {
            return false;
        };
        (auth.date - now).abs() <= MAX_SKEW && auth.verifies(&secret)
    }
}

/// The processor's algorithms this API accepts: all three (MD5 when the
/// header names none).
pub const ACCEPTED: [Algorithm; 3] = Algorithm::STRONGEST_FIRST;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error_code": code, "message": message })),
    )
        .into_response()
}

async fn order(
    State(api): State<SimulatedApi>,
    Path(ref_no): Path<String>,
    headers: HeaderMap,
) -> Response {
    api.inner.requests.fetch_add(1, Ordering::Relaxed);
    {
        let mut failures = lock(&api.inner.failures);
        if let Some((status, left)) = failures.as_mut() {
            let status = *status;
            *left -= 1;
            if *left == 0 {
                *failures = None;
            }
            return error(status, "SIMULATED_FAILURE", "simulated failure");
        }
    }
    if !api.authenticate(&headers, chrono::Utc::now().naive_utc()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_ERROR",
            "Authentication needed for this resource",
        );
    }
    api.inner.authorized.fetch_add(1, Ordering::Relaxed);
    match lock(&api.inner.orders).get(&ref_no) {
        Some(order) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            order.clone(),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "Order not found"),
    }
}

/// A REST order object as the processor writes it, personal details and
/// all (invented), for tests and `simulate api`: the client must keep the
/// money and references and drop the rest.
pub fn example_order(ref_no: &str, external_reference: &str, status: &str) -> String {
    // Written as text so the amounts keep their digits (`10.00`, `0.50`).
    let value = serde_json::json!({
        "RefNo": ref_no,
        "OrderNo": 0,
        "ExternalReference": external_reference,
        "Status": status,
        "ApproveStatus": "OK",
        "VendorApproveStatus": "OK",
        "OrderDate": "2026-12-01 10:00:00",
        "Currency": "eur",
        "NetPrice": 10,
        "GrossPrice": 10.00,
        "VAT": 0,
        "AvangateCommission": 0.50,
        "FxRate": 1.125696,
        "FxMarkup": 4,
        "PayoutCurrency": "usd",
        "BillingDetails": {
            "FirstName": "Mirela", "LastName": "Ionescu-Vlad",
            "Email": "mirela.ionescu-vlad@example.org",
            "Address1": "Bulevardul Unirii 7", "City": "Iasi", "Zip": "700001",
            "Phone": "+40 232 000 999", "CountryCode": "ro"
        },
        "CustomerDetails": { "Email": "mirela.ionescu-vlad@example.org" },
        "PaymentDetails": {
            "Type": "CC", "Currency": "eur",
            "PaymentMethod": { "FirstDigits": "555555", "LastDigits": "4444", "CardType": "mastercard" }
        },
        "Items": [{
            "LineItemReference": format!("{ref_no}-1"),
            "ProductDetails": {
                "Name": "Licence", "RenewalStatus": true,
                "Subscriptions": [{ "SubscriptionReference": format!("SUB{ref_no}") }]
            },
            "Price": { "UnitNetPrice": 10, "GrossPrice": 10 },
            "Quantity": 1
        }]
    });
    value
        .to_string()
        .replace("\"GrossPrice\":10.0,", "\"GrossPrice\":10.00,")
        .replace(
            "\"AvangateCommission\":0.5,",
            "\"AvangateCommission\":0.50,",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(API_AUTH_HEADER, value.parse().expect("header"));
        headers
    }

    #[test]
    fn only_a_known_vendor_with_the_right_hash_and_a_close_date_passes() {
        let secret = SecretKey::new(b"right".to_vec());
        let api = SimulatedApi::new("VENDOR", SecretKey::new(b"right".to_vec()));
        let now = chrono::NaiveDate::from_ymd_opt(2026, 12, 9)
            .and_then(|d| d.and_hms_opt(10, 0, 0))
            .expect("date");
        let header = |code: &str, key: &SecretKey, at, algorithm| {
            crate::ipn::api_auth_header(code, key, at, algorithm)
        };
        for algorithm in ACCEPTED {
            assert!(api.authenticate(&headers(&header("VENDOR", &secret, now, algorithm)), now));
        }
        let wrong = SecretKey::new(b"wrong".to_vec());
        let minutes = chrono::Duration::minutes;
        let algorithm = Algorithm::Sha3_256;
        assert!(!api.authenticate(&headers(&header("VENDOR", &wrong, now, algorithm)), now));
        assert!(!api.authenticate(&headers(&header("OTHER", &secret, now, algorithm)), now));
        assert!(api.authenticate(
            &headers(&header("VENDOR", &secret, now - minutes(15), algorithm)),
            now
        ));
        assert!(!api.authenticate(
            &headers(&header("VENDOR", &secret, now - minutes(16), algorithm)),
            now
        ));
        assert!(!api.authenticate(
            &headers(&header("VENDOR", &secret, now + minutes(16), algorithm)),
            now
        ));
        assert!(!api.authenticate(&HeaderMap::new(), now));
    }
}
