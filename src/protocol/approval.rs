//! The person's decision on a user code: look it up, approve or deny (RFC 8628 §3.3).
//! Used by the verification pages, Campus's JSON approval call and the admin CLI.
//! The approver's identity is an argument here; callers take it only from a server-side
//! session or the operator's own terminal, never from a request body.

use crate::clock::Timestamp;
use crate::secrets::{self, UserCodeError};
use crate::store::{self, DeviceCode, DeviceCodeStatus, Store};

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

/// A code that is waiting for a decision, or why it is not.
pub fn find_pending(
    store: &Store,
    typed: &str,
    now: Timestamp,
) -> Result<DeviceCode, ApprovalError> {
    let user_code = secrets::normalize_user_code(typed).map_err(CodeProblem::Malformed)?;
    let code = store
        .find_device_code_by_user_code(&user_code)?
        .ok_or(CodeProblem::Unknown)?;
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

/// Approves (`Some(user_id)`) or denies (`None`) a pending code. Of two racing decisions
/// exactly one wins; the loser learns what happened instead.
pub fn decide(
    store: &Store,
    typed: &str,
    approver: Option<i64>,
    decided_ip: &str,
    now: Timestamp,
) -> Result<DeviceCode, ApprovalError> {
    let code = find_pending(store, typed, now)?;
    if store.decide_device_code(&code.user_code, approver, decided_ip, now.secs())? {
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
