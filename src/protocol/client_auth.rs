//! Client authentication at the token-style endpoints (RFC 6749 §2.3, RFC 8628 §3.1).
//!
//! Public clients send `client_id` only. Confidential clients use `client_secret_basic`
//! (HTTP Basic, each part form-url-decoded after Base64, RFC 6749 §2.3.1 / Appendix B) or
//! `client_secret_post`. Using both at once is `invalid_request` (§2.3). An unknown client
//! and a wrong secret get the same `invalid_client` answer, after the same work. Basic
//! with an empty password (`guest:`) presents no secret: fine for a public client, a
//! failure for a confidential one.

use std::sync::Arc;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::{oauth, Error, ErrorCode, OAuthError};
use crate::secrets;
use crate::store::{Client, Store};

/// What the request offered as client credentials; the edge fills it in.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientCredentials<'a> {
    /// The raw `Authorization` header value, if any.
    pub authorization: Option<&'a str>,
    /// `Authorization` came more than once: which one would be the client's is a guess.
    pub repeated_authorization: bool,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
}

/// Credentials decoded from an `Authorization: Basic` header.
#[derive(Debug, PartialEq, Eq)]
pub struct BasicCredentials {
    pub client_id: String,
    pub client_secret: String,
}

/// `None` when the header is not Basic at all; `Some(Err)` when it is Basic but malformed.
pub fn parse_basic(header: &str) -> Option<Result<BasicCredentials, ()>> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let decoded = LENIENT.decode(rest.trim()).map_err(|_| ());
    let parsed = decoded
        .and_then(|bytes| String::from_utf8(bytes).map_err(|_| ()))
        .and_then(|text| {
            let (id, secret) = text.split_once(':').ok_or(())?;
            Ok(BasicCredentials {
                client_id: form_url_decode(id)?,
                client_secret: form_url_decode(secret)?,
            })
        });
    Some(parsed)
}

/// RFC 6749 Appendix B: `+` is a space, then percent-decoding, then UTF-8.
fn form_url_decode(part: &str) -> Result<String, ()> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ())
}

/// Identifies and, for confidential clients, authenticates the caller.
pub fn authenticate_client(
    store: &Store,
    creds: ClientCredentials<'_>,
) -> Result<Arc<Client>, Error> {
    if creds.repeated_authorization {
        return oauth(
            ErrorCode::InvalidRequest,
            "send one Authorization header, not several",
        );
    }
    match creds.authorization.and_then(parse_basic) {
        Some(Err(())) => Err(failed(true).into()),
        Some(Ok(basic)) => {
            if creds.client_secret.is_some() {
                return oauth(
                    ErrorCode::InvalidRequest,
                    "use one client authentication method, not Basic and client_secret together",
                );
            }
            if creds.client_id.is_some_and(|id| id != basic.client_id) {
                return oauth(
                    ErrorCode::InvalidRequest,
                    "client_id in the body does not match the Basic credentials",
                );
            }
            // `client_id:` with an empty password is a public client naming itself (RFC
            // 6749 §2.3.1 form-encodes an absent secret as empty; golang.org/x/oauth2 sends
            // it first): no secret presented. A confidential client still fails, with
            // the Basic challenge.
            let secret = Some(basic.client_secret.as_str()).filter(|s| !s.is_empty());
            verify(store, &basic.client_id, secret, true)
        }
        None => match creds.client_id {
            Some(client_id) => verify(store, client_id, creds.client_secret, false),
            None => oauth(
                ErrorCode::InvalidClient,
                "client authentication is required",
            ),
        },
    }
}

fn verify(
    store: &Store,
    client_id: &str,
    secret: Option<&str>,
    tried_basic: bool,
) -> Result<Arc<Client>, Error> {
    let client = store.find_client(client_id)?;
    let accepted = match (&client, secret) {
        (Some(c), None) => !c.is_confidential(),
        (Some(c), Some(secret)) => c
            .secret_hash
            .as_deref()
            .is_some_and(|hash| secrets::secret_matches(secret, hash)),
        (None, Some(secret)) => {
            // Same work as a wrong secret, so timing does not reveal which client ids exist.
            let _ = secrets::secret_matches(secret, &"0".repeat(64));
            false
        }
        (None, None) => false,
    };
    match client {
        Some(client) if accepted => Ok(client),
        _ => Err(failed(tried_basic).into()),
    }
}

/// The refusal for a client that authenticated but may not use this endpoint (a public
/// client at introspection): `invalid_client`, with the Basic challenge when it tried Basic
/// (RFC 6749 §5.2 asks for `WWW-Authenticate` whenever the client used the header).
pub fn refuse(creds: ClientCredentials<'_>, description: &'static str) -> Error {
    OAuthError {
        basic_challenge: creds.authorization.and_then(parse_basic).is_some(),
        ..OAuthError::new(ErrorCode::InvalidClient, description)
    }
    .into()
}

fn failed(tried_basic: bool) -> OAuthError {
    OAuthError {
        basic_challenge: tried_basic,
        ..OAuthError::new(ErrorCode::InvalidClient, "client authentication failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_url_decoded() {
        // "my%20app:p%2Bss%3A%2F%3D word" → id "my app", secret "p+ss:/= word"
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("my%20app:p%2Bss%3A%2F%3D+word")
        );
        assert_eq!(
            parse_basic(&header),
            Some(Ok(BasicCredentials {
                client_id: "my app".into(),
                client_secret: "p+ss:/= word".into()
            }))
        );
    }

    #[test]
    fn other_schemes_are_not_basic_and_garbage_is_malformed() {
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), Some(Err(())));
        let no_colon = format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode("nocolon")
        );
        assert_eq!(parse_basic(&no_colon), Some(Err(())));
    }
}
