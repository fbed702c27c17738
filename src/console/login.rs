//! `/login`, `/logout`, and the [`Session`] every page extracts.
//!
//! The session cookie holds a random token (the database keeps its
//! SHA-256); it is `HttpOnly`, `SameSite=Strict`, and `Secure` with the
//! `__Host-` prefix unless `console-insecure-cookies`. The login form
//! carries a CSRF token of its own (from a cookie set with the form), so a
//! forged page cannot log a browser into someone else's account either.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::{self, SessionState};
use super::pages::{self, PageError};
use super::{Ctx, csrf, throttle};
use crate::store::console::{ConsoleAction, ConsoleRole};

/// A logged-in user's session, as handlers see it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub user: String,
    pub role: ConsoleRole,
    /// The token this session's forms carry.
    pub csrf: String,
}

impl Session {
    /// Refuses (403) a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), PageError> {
        if submitted.is_some_and(|s| auth::same_secret(&self.csrf, s)) {
            Ok(())
        } else {
            Err(PageError::forbidden(
                "This form has no valid CSRF token: it did not come from this console's page. \
                 Nothing was changed; open the page again and retry.",
            ))
        }
    }

    /// Refuses (403) a viewer.
    pub fn require_resolver(&self) -> Result<(), PageError> {
        match self.role {
            ConsoleRole::Resolver => Ok(()),
            ConsoleRole::Viewer => Err(PageError::forbidden(
                "Your role is viewer: you may read every page, but only a resolver may change \
                 anything. Nothing was changed.",
            )),
        }
    }
}

fn session_cookie(console: &super::Console) -> &'static str {
    if console.settings.insecure_cookies {
        "ipn_console"
    } else {
        "__Host-ipn_console"
    }
}

fn login_cookie(console: &super::Console) -> &'static str {
    if console.settings.insecure_cookies {
        "ipn_console_login"
    } else {
        "__Host-ipn_console_login"
    }
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, path `/`, `Secure`
/// unless insecure cookies were asked for; `None` clears the cookie.
fn set_cookie(console: &super::Console, name: &str, value: Option<&str>) -> HeaderValue {
    let secure = if console.settings.insecure_cookies {
        ""
    } else {
        "; Secure"
    };
    let text = match value {
        Some(value) => format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty() && value.len() <= 128)
}

fn to_login(reason: Option<&str>) -> Response {
    let location = match reason {
        Some(reason) => format!("/login?ended={reason}"),
        None => "/login".to_owned(),
    };
    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
}

impl FromRequestParts<Ctx> for Session {
    type Rejection = Response;

    /// The live session of the request's cookie; otherwise a redirect to
    /// `/login` (saying why when the session expired).
    async fn from_request_parts(parts: &mut Parts, console: &Ctx) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, session_cookie(console)) else {
            return Err(to_login(None));
        };
        let now = console.clock.now();
        let found = console
            .store
            .console_session(&auth::token_digest(token))
            .await
            .map_err(|err| PageError::from(err).into_response())?;
        let Some(session) = found else {
            return Err(to_login(None));
        };
        let state = if session.user_disabled {
            SessionState::Ended
        } else {
            auth::session_state(
                console.settings.session,
                session.created_at,
                session.last_seen_at,
                session.ended,
                now,
            )
        };
        let reason = match state {
            SessionState::Live => None,
            SessionState::Ended => Some("ended"),
            SessionState::IdleExpired => Some("idle"),
            SessionState::AbsoluteExpired => Some("expired"),
        };
        if let Some(reason) = reason {
            if !session.ended {
                let _ = console.store.end_console_session(session.id, now).await;
            }
            return Err(to_login(Some(reason)));
        }
        console
            .store
            .touch_console_session(session.id, now)
            .await
            .map_err(|err| PageError::from(err).into_response())?;
        Ok(Session {
            id: session.id,
            user: session.user_name,
            role: session.role,
            csrf: csrf::token(token),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    ended: Option<String>,
}

/// `GET /login`: the form, with a fresh login cookie and its CSRF token.
pub async fn form(State(console): State<Ctx>, Query(query): Query<LoginQuery>) -> Response {
    let note = match query.ended.as_deref() {
        Some("idle") => Some("Your session ended after a time without use. Log in again."),
        Some("expired") => Some("Your session reached its longest life. Log in again."),
        Some("ended") => Some("Your session has ended. Log in again."),
        Some("out") => Some("You are logged out."),
        _ => None,
    };
    login_page(&console, StatusCode::OK, note, None)
}

fn login_page(
    console: &super::Console,
    status: StatusCode,
    note: Option<&str>,
    error: Option<&str>,
) -> Response {
    let secret = match auth::new_token() {
        Ok(secret) => secret,
        Err(err) => return PageError::internal(err.to_string()).into_response(),
    };
    let body: Markup = html! {
        h1 { "Log in" }
        @if let Some(note) = note { p.note role="status" { (note) } }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form method="post" action="/login" {
            input type="hidden" name=(csrf::FIELD) value=(csrf::token(&secret));
            p {
                label for="username" { "User name" }
                input #username type="text" name="username" autocomplete="username" required autofocus;
            }
            p {
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
            }
            p { button type="submit" { "Log in" } }
        }
    };
    let page = pages::layout("Log in", None, body);
    let mut response = (status, page).into_response();
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(console, login_cookie(console), Some(&secret)),
    );
    response
}

/// The login page answered 429, saying how long to wait (`Retry-After`,
/// in whole seconds).
fn too_many(console: &super::Console, wait: Duration, why: &str) -> Response {
    let secs = throttle::retry_after_secs(wait);
    let message = format!("{why} Try again in {secs} second(s).");
    let mut response = login_page(console, StatusCode::TOO_MANY_REQUESTS, None, Some(&message));
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    response
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /login`: checks the form's token, the caps on checks running
/// and the name's delay ([`throttle`]), then the password; opens a
/// session and goes to the overview.
pub async fn submit(
    State(console): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    match try_login(&console, peer, &headers, form).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn try_login(
    console: &super::Served,
    peer: SocketAddr,
    headers: &HeaderMap,
    form: LoginForm,
) -> Result<Response, PageError> {
    let login_secret = cookie(headers, login_cookie(console));
    if !login_secret.is_some_and(|secret| csrf::verify(secret, form.csrf.as_deref())) {
        return Err(PageError::forbidden(
            "This login form has no valid CSRF token (it came from elsewhere, or expired). \
             Open the login page again.",
        ));
    }
    let now = console.clock.now();
    let policy = console.settings.login;
    let client = console.settings.source.client_addr(peer, headers);
    let key = &console.settings.attempt_key;
    let user_digest = key.user_digest(&form.username);
    let address_digest = key.address_digest(client);
    // One check of a name at a time: the others are answered at once,
    // without a check and without being counted.
    let Some(_running) = console.checks.try_user(&user_digest) else {
        return Ok(too_many(
            console,
            Duration::from_secs(1),
            "A login for this name is being checked right now. Try again in a moment.",
        ));
    };
    // And a few checks at once in all, so a burst over many names leaves
    // the machine's other cores to the worker.
    let Some(_permit) = console.checks.total(policy.check_wait).await else {
        return Ok(too_many(
            console,
            Duration::from_secs(1),
            "The console is busy checking other logins. Try again in a moment.",
        ));
    };
    let since = now - chrono::Duration::from_std(policy.window).unwrap_or_default();
    // Attempts older than the window count for nothing: they go.
    if let Err(err) = console.store.prune_login_attempts(since).await {
        tracing::warn!(error = %err, "console: cannot prune old login attempts");
    }
    // Counted before the password is checked, atomically with the
    // decision: parallel attempts for one name are decided one after
    // another, each seeing the failures before it.
    let claimed = console
        .store
        .claim_login_attempt(&user_digest, &address_digest, since, now, |counts| {
            match throttle::decide(&policy, *counts, now) {
                throttle::LoginDecision::Check => Ok(()),
                throttle::LoginDecision::Wait(wait) => Err(wait),
            }
        })
        .await?;
    let attempt = match claimed {
        Ok(attempt) => attempt,
        Err(wait) => {
            return Ok(too_many(
                console,
                wait,
                "Too many failed logins for this name: each further attempt must wait longer.",
            ));
        }
    };
    let user = console.store.console_user(form.username.trim()).await?;
    let (hash, usable) = match &user {
        Some(user) => (user.password_hash.clone(), !user.disabled),
        None => (auth::decoy_hash().to_owned(), false),
    };
    let password = zeroize::Zeroizing::new(form.password);
    // Argon2 takes tens of milliseconds of CPU: off the async threads.
    let matches = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let ok = usable && matches;
    if ok {
        console.store.login_attempt_succeeded(attempt).await?;
    }
    let user = match user {
        Some(user) if ok => user,
        _ => {
            return Ok(login_page(
                console,
                StatusCode::UNAUTHORIZED,
                None,
                Some("Wrong user name or password."),
            ));
        }
    };
    let token = auth::new_token().map_err(|err| PageError::internal(err.to_string()))?;
    console
        .store
        .create_console_session(&auth::token_digest(&token), user.id, now)
        .await?;
    console
        .store
        .record_console_action(&user.name, ConsoleAction::Login, None, None, now)
        .await?;
    tracing::info!(user = %user.name, "console login");
    let mut response = (StatusCode::SEE_OTHER, [(LOCATION, "/")]).into_response();
    let cookies = response.headers_mut();
    cookies.append(
        SET_COOKIE,
        set_cookie(console, session_cookie(console), Some(&token)),
    );
    cookies.append(SET_COOKIE, set_cookie(console, login_cookie(console), None));
    Ok(response)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /logout`: ends the session (with its CSRF token) and clears the
/// cookie.
pub async fn logout(
    State(console): State<Ctx>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check_csrf(form.csrf.as_deref())?;
    let now = console.clock.now();
    console.store.end_console_session(session.id, now).await?;
    console
        .store
        .record_console_action(&session.user, ConsoleAction::Logout, None, None, now)
        .await?;
    let mut response = (StatusCode::SEE_OTHER, [(LOCATION, "/login?ended=out")]).into_response();
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(&console, session_cookie(&console), None),
    );
    Ok(response)
}
