//! What a signed-in person may do to their own account from the account page: cancel an
//! approval the device has not collected yet, and sign out everywhere. The person is an
//! argument (callers take it only from the server-side session); an id from a form is a
//! choice among the person's own rows, never an authority over someone else's.

use crate::clock::Timestamp;
use crate::store::{self, DeviceCodeId, SignedOut, Store, UserId};

/// Cancels `owner`'s approval of device code `code_id` while no device has redeemed it:
/// the code becomes denied, so the device's next poll gets `access_denied`
/// (RFC 8628 §3.5). `Ok(false)`: not `owner`'s, already redeemed, cancelled or expired.
pub fn cancel_approval(
    store: &Store,
    owner: UserId,
    code_id: DeviceCodeId,
    now: Timestamp,
) -> Result<bool, store::Error> {
    store.cancel_approved_device_code(code_id, owner, now.secs())
}

/// Signs `owner` out everywhere: every browser session (the caller's too), every grant
/// with its access and refresh tokens (RFC 7009 §2.1: revoking a grant's refresh token
/// ends its access tokens too), and every approval no device has collected yet, so a
/// device cannot sign in a moment later with a code approved before.
pub fn sign_out_everywhere(
    store: &mut Store,
    owner: UserId,
    now: Timestamp,
) -> Result<SignedOut, store::Error> {
    store.sign_out_user_everywhere(owner, now.secs())
}
