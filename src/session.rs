//! Server-side sessions and their CSRF tokens: the only source of "who is the user".
//!
//! The cookie carries 256 random bits; the database keeps only their hash. A session row
//! exists only once a person has signed in: a stranger's page views write nothing to
//! SQLite. Before sign-in the visitor is an *anonymous* session held by the browser alone:
//! a random `dg_csrf` cookie (same attributes as the session cookie) whose value is also the
//! sign-in form's hidden `csrf_token` — a double-submit cookie, compared in constant time.
//! A cross-site page can make a browser POST the form, but it can neither read nor set the
//! HttpOnly, SameSite=Lax cookie, so it cannot present a matching pair (login CSRF).
//! Signing in always creates a new session id (no session fixation). Sessions end after
//! 30 idle minutes or 12 hours, whichever comes first.

use crate::clock::Timestamp;
use crate::http::Request;
use crate::secrets;
use crate::store::{self, Store, UserId};

pub const COOKIE_NAME: &str = "dg_session";
/// The anonymous visitor's CSRF cookie: its value is the sign-in form's `csrf_token`.
pub const CSRF_COOKIE_NAME: &str = "dg_csrf";
pub const IDLE_TIMEOUT: i64 = 30 * 60;
pub const ABSOLUTE_TIMEOUT: i64 = 12 * 3600;
/// `last_seen_at` is written at most this often, so page views are not all writes.
const TOUCH_AFTER: i64 = 60;

#[derive(Debug, Clone)]
pub struct Session {
    /// The stored session's key; `None` for an anonymous visitor (nothing stored, the CSRF
    /// token is the `dg_csrf` cookie's value).
    id_hash: Option<String>,
    pub user: Option<SignedIn>,
    pub csrf_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub user_id: UserId,
    pub username: String,
    /// Unix seconds: when this session signed in (OpenID Connect's `auth_time`).
    pub signed_in_at: i64,
}

/// The live session named by the request's cookie, if any.
pub fn current(
    store: &Store,
    req: &Request,
    now: Timestamp,
) -> Result<Option<Session>, store::Error> {
    let Some(id) = req.cookie(COOKIE_NAME).filter(|v| looks_like_token(v)) else {
        return Ok(None);
    };
    let id_hash = secrets::hash_secret(id);
    let now = now.secs();
    let Some(row) = store.find_session(&id_hash, now - IDLE_TIMEOUT, now - ABSOLUTE_TIMEOUT)?
    else {
        return Ok(None);
    };
    if now - row.last_seen_at >= TOUCH_AFTER {
        store.touch_session(&id_hash, now)?;
    }
    let user = match (row.user_id, row.username) {
        (Some(user_id), Some(username)) => Some(SignedIn {
            user_id,
            username,
            signed_in_at: row.created_at,
        }),
        _ => None,
    };
    Ok(Some(Session {
        id_hash: Some(id_hash),
        user,
        csrf_token: row.csrf_token,
    }))
}

/// The stored session, else the anonymous one named by the `dg_csrf` cookie (`None` when
/// there is neither). What a POST form's CSRF token is checked against. Writes nothing
/// beyond `current`'s touch of a stored session.
pub fn current_or_anonymous(
    store: &Store,
    req: &Request,
    now: Timestamp,
) -> Result<Option<Session>, store::Error> {
    if let Some(session) = current(store, req, now)? {
        return Ok(Some(session));
    }
    Ok(req
        .cookie(CSRF_COOKIE_NAME)
        .filter(|v| looks_like_token(v))
        .map(anonymous))
}

/// The session behind a page view: stored, or anonymous (from the `dg_csrf` cookie, or a new
/// random one with the `Set-Cookie` value to send). Never stores a row.
pub fn for_page(
    store: &Store,
    req: &Request,
    now: Timestamp,
    scope: CookieScope<'_>,
) -> Result<(Session, Option<String>), store::Error> {
    if let Some(session) = current_or_anonymous(store, req, now)? {
        return Ok((session, None));
    }
    let token = secrets::random_token();
    let set_cookie = cookie(CSRF_COOKIE_NAME, &token, scope, None);
    Ok((anonymous(&token), Some(set_cookie)))
}

fn anonymous(csrf_token: &str) -> Session {
    Session {
        id_hash: None,
        user: None,
        csrf_token: csrf_token.to_string(),
    }
}

/// Replaces `old` (if any) with a new signed-in session; returns it and its cookie.
pub fn sign_in(
    store: &Store,
    old: Option<&Session>,
    user: SignedIn,
    now: Timestamp,
    scope: CookieScope<'_>,
) -> Result<(Session, String), store::Error> {
    if let Some(id_hash) = old.and_then(|old| old.id_hash.as_deref()) {
        store.delete_session(id_hash)?;
    }
    create(store, user, now, scope)
}

/// Ends the session (if one is stored); returns the cookie that clears it in the browser.
pub fn sign_out(
    store: &Store,
    session: &Session,
    scope: CookieScope<'_>,
) -> Result<String, store::Error> {
    if let Some(id_hash) = &session.id_hash {
        store.delete_session(id_hash)?;
    }
    Ok(cleared_cookie(scope))
}

/// The `Set-Cookie` value that removes the session cookie from the browser.
pub fn cleared_cookie(scope: CookieScope) -> String {
    cookie(COOKIE_NAME, "", scope, Some(0))
}

/// Does the presented CSRF token belong to this session? Constant-time.
pub fn csrf_ok(session: &Session, presented: Option<&str>) -> bool {
    presented.is_some_and(|token| {
        secrets::constant_time_eq(token.as_bytes(), session.csrf_token.as_bytes())
    })
}

/// Stores a signed-in session: the only place a session row is written.
fn create(
    store: &Store,
    user: SignedIn,
    now: Timestamp,
    scope: CookieScope<'_>,
) -> Result<(Session, String), store::Error> {
    let id = secrets::random_token();
    let id_hash = secrets::hash_secret(&id);
    let csrf_token = secrets::random_token();
    store.create_session(&id_hash, Some(user.user_id), &csrf_token, now.secs())?;
    Ok((
        Session {
            id_hash: Some(id_hash),
            user: Some(user),
            csrf_token,
        },
        cookie(COOKIE_NAME, &id, scope, None),
    ))
}

/// Where a cookie is sent: `Path` (the issuer's path, so a cookie of devicegate at
/// `https://host/sso` is not sent to other applications on the host; `/` for a bare host)
/// and `Secure` (when the issuer is https or a trusted proxy saw https).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieScope<'a> {
    pub secure: bool,
    /// A path that starts with `/`.
    pub path: &'a str,
}

/// `HttpOnly` (no script reads it), `SameSite=Lax` (not sent on cross-site POSTs),
/// `Path` and `Secure` from `scope`. A session cookie: it dies with the browser.
/// Both `dg_session` and `dg_csrf` are made here, so they cannot drift apart.
fn cookie(name: &str, value: &str, scope: CookieScope<'_>, max_age: Option<u32>) -> String {
    let path = scope.path;
    let mut cookie = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if scope.secure {
        cookie.push_str("; Secure");
    }
    cookie
}

fn looks_like_token(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
