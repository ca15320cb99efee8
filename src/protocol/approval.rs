//! The person's decision on a user code: look it up, approve or deny (RFC 8628 §3.3).
//! Used by the verification pages, Campus's JSON approval call and the admin CLI.
//!
//! The approver's identity is an argument here; callers take it only from a server-side
//! session or the operator's own terminal, never from a request body. Look-ups by a person
//! are brute-force limited (see `limits`): a malformed or unknown code counts against their
//! account and their address (IPv6: its /64); a locked-out person cannot look up or decide. Callers make these look-ups only for codes a person submitted (a POST),
//! never for a page view.

use super::limits::{self, Limits};
use crate::clock::Timestamp;
use crate::secrets::{self, UserCodeError};
use crate::store::{self, DeviceCode, DeviceCodeStatus, Store, UserId};

/// Why a user code cannot be decided on. Campus names: `invalid_code`, `expired`,
/// `already_used`, `denied`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeProblem {
    Malformed(UserCodeError),
    Unknown,
    Expired,
    AlreadyUsed,
    Denied,
}

impl CodeProblem {
    pub fn campus_code(&self) -> &'static str {
        match self {
            CodeProblem::Malformed(_) | CodeProblem::Unknown => "invalid_code",
            CodeProblem::Expired => "expired",
            CodeProblem::AlreadyUsed => "already_used",
            CodeProblem::Denied => "denied",
        }
    }
}

#[derive(Debug)]
pub enum ApprovalError {
    Code(CodeProblem),
    /// Too many failed attempts: try again in this many seconds.
    Locked(i64),
    Store(store::Error),
}

impl From<store::Error> for ApprovalError {
    fn from(e: store::Error) -> Self {
        ApprovalError::Store(e)
    }
}

impl From<CodeProblem> for ApprovalError {
    fn from(p: CodeProblem) -> Self {
        ApprovalError::Code(p)
    }
}

/// Who is acting: the operator at the server's terminal, or a signed-in person.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Operator,
    /// A signed-in person (`username` for the log) at `ip` (the address stored with a
    /// decision), held to `limits`; `signed_in_at` (Unix seconds) becomes the grant's
    /// OpenID Connect `auth_time`.
    Person {
        user_id: UserId,
        username: &'a str,
        signed_in_at: i64,
        ip: &'a str,
        limits: Limits,
    },
}

impl Actor<'_> {
    fn ip(&self) -> &str {
        match self {
            Actor::Operator => "cli",
            Actor::Person { ip, .. } => ip,
        }
    }

    /// When the approver signed in (Unix seconds): the person's session sign-in, or now
    /// for the operator (who acts at the terminal at this moment).
    fn auth_time(&self, now: Timestamp) -> i64 {
        match self {
            Actor::Operator => now.secs(),
            Actor::Person { signed_in_at, .. } => *signed_in_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve { user_id: UserId },
    Deny,
}

/// A code that is waiting for a decision, or why it is not.
pub fn find_pending(
    store: &Store,
    typed: &str,
    actor: Actor<'_>,
    now: Timestamp,
) -> Result<DeviceCode, ApprovalError> {
    if let Actor::Person {
        user_id,
        ip,
        limits,
        ..
    } = actor
    {
        if let Some(wait) = limits::code_entry_locked(store, &limits, user_id, ip, now)? {
            crate::metrics::Metrics::count(&crate::metrics::METRICS.lockouts);
            return Err(ApprovalError::Locked(wait));
        }
    }
    let found = match secrets::normalize_user_code(typed) {
        Ok(user_code) => store
            .find_device_code_by_user_code(&user_code)?
            .ok_or(CodeProblem::Unknown),
        Err(e) => Err(CodeProblem::Malformed(e)),
    };
    let code = match found {
        Ok(code) => code,
        Err(problem) => {
            // RFC 8628 §5.1: malformed input stays counted too; never log the code itself.
            if let Actor::Person {
                user_id,
                username,
                ip,
                limits,
                ..
            } = actor
            {
                let username = crate::logging::printable(username);
                log::warn!("failed user code entry by `{username}` from {ip}");
                if limits::record_wrong_code(store, &limits, user_id, ip, now)? {
                    log::warn!(
                        "code entry locked for `{username}` from {ip} for {} s",
                        limits.window
                    );
                }
            }
            return Err(problem.into());
        }
    };
    match why_not_pending(&code, now) {
        Some(problem) => Err(problem.into()),
        None => Ok(code),
    }
}

fn why_not_pending(code: &DeviceCode, now: Timestamp) -> Option<CodeProblem> {
    match code.status {
        DeviceCodeStatus::Approved | DeviceCodeStatus::Redeemed => Some(CodeProblem::AlreadyUsed),
        DeviceCodeStatus::Denied => Some(CodeProblem::Denied),
        DeviceCodeStatus::Pending if now.secs() >= code.expires_at => Some(CodeProblem::Expired),
        DeviceCodeStatus::Pending => None,
    }
}

/// Approves or denies a pending code. Of two racing decisions exactly one wins (one
/// conditional UPDATE); the loser learns what happened instead.
pub fn decide(
    store: &Store,
    typed: &str,
    decision: Decision,
    actor: Actor<'_>,
    now: Timestamp,
) -> Result<DeviceCode, ApprovalError> {
    let code = find_pending(store, typed, actor, now)?;
    let approver = match decision {
        Decision::Approve { user_id } => Some(user_id),
        Decision::Deny => None,
    };
    let auth_time = Some(actor.auth_time(now));
    if store.decide_device_code(&code.user_code, approver, auth_time, actor.ip(), now.secs())? {
        return Ok(code);
    }
    // Lost a race: someone decided (or it expired) between our read and our write.
    let current = store
        .find_device_code_by_user_code(&code.user_code)?
        .ok_or(CodeProblem::Unknown)?;
    Err(why_not_pending(&current, now)
        .unwrap_or(CodeProblem::AlreadyUsed)
        .into())
}
