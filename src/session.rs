//! Server-side sessions and their CSRF tokens: the only source of "who is the user".
//!
//! The cookie carries 256 random bits; the database keeps only their hash. A session
//! exists before sign-in too (its CSRF token protects the sign-in form against login
//! CSRF); signing in replaces it with a new id (no session fixation). Sessions end after
//! 30 idle minutes or 12 hours, whichever comes first.

use crate::clock::Timestamp;
use crate::http::Request;
use crate::secrets;
use crate::store::{self, Store};

pub const COOKIE_NAME: &str = "dg_session";
pub const IDLE_TIMEOUT: i64 = 30 * 60;
pub const ABSOLUTE_TIMEOUT: i64 = 12 * 3600;
/// `last_seen_at` is written at most this often, so page views are not all writes.
const TOUCH_AFTER: i64 = 60;

#[derive(Debug, Clone)]
pub struct Session {
    id_hash: String,
    pub user: Option<SignedIn>,
    pub csrf_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub user_id: i64,
    pub username: String,
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
        (Some(user_id), Some(username)) => Some(SignedIn { user_id, username }),
        _ => None,
    };
    Ok(Some(Session {
        id_hash,
        user,
        csrf_token: row.csrf_token,
    }))
}

/// The current session, or a new anonymous one with the `Set-Cookie` value to send.
pub fn current_or_new(
    store: &Store,
    req: &Request,
    now: Timestamp,
    secure: bool,
) -> Result<(Session, Option<String>), store::Error> {
    if let Some(session) = current(store, req, now)? {
        return Ok((session, None));
    }
    let (session, cookie) = create(store, None, now, secure)?;
    Ok((session, Some(cookie)))
}

/// Replaces `old` (if any) with a new signed-in session; returns it and its cookie.
pub fn sign_in(
    store: &Store,
    old: Option<&Session>,
    user: SignedIn,
    now: Timestamp,
    secure: bool,
) -> Result<(Session, String), store::Error> {
    if let Some(old) = old {
        store.delete_session(&old.id_hash)?;
    }
    create(store, Some(user), now, secure)
}

/// Ends the session; returns the cookie that clears it in the browser.
pub fn sign_out(store: &Store, session: &Session, secure: bool) -> Result<String, store::Error> {
    store.delete_session(&session.id_hash)?;
    Ok(cookie("", secure, Some(0)))
}

/// Does the presented CSRF token belong to this session? Constant-time.
pub fn csrf_ok(session: &Session, presented: Option<&str>) -> bool {
    presented.is_some_and(|token| {
        secrets::constant_time_eq(token.as_bytes(), session.csrf_token.as_bytes())
    })
}

fn create(
    store: &Store,
    user: Option<SignedIn>,
    now: Timestamp,
    secure: bool,
) -> Result<(Session, String), store::Error> {
    let id = secrets::random_token();
    let id_hash = secrets::hash_secret(&id);
    let csrf_token = secrets::random_token();
    store.create_session(
        &id_hash,
        user.as_ref().map(|u| u.user_id),
        &csrf_token,
        now.secs(),
    )?;
    Ok((
        Session {
            id_hash,
            user,
            csrf_token,
        },
        cookie(&id, secure, None),
    ))
}

/// `HttpOnly` (no script reads it), `SameSite=Lax` (not sent on cross-site POSTs),
/// `Secure` when the issuer is https. A session cookie: it dies with the browser.
fn cookie(value: &str, secure: bool, max_age: Option<u32>) -> String {
    let mut cookie = format!("{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
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
