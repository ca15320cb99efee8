//! A device logging in with devicegate's client library, the same code `devicegate login`
//! uses. Run a server (`cargo run -- serve`), then:
//!
//!     cargo run --example login -- http://127.0.0.1:8080
//!
//! and approve the printed code in a browser (or `devicegate approve CODE --user admin`).
//! A server restart while it waits is ridden out: transient errors are retried with
//! backoff until the code expires (RFC 8628 §3.5).

use devicegate::device_client::{self, Backoff, DeviceLogin, LoginError, PollOutcome};

fn main() -> Result<(), LoginError> {
    let server = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let mut login = DeviceLogin::start(&server, "guest", Some("read"))?;
    let auth = &login.authorization;
    println!(
        "Open {} and enter {}",
        auth.verification_uri, auth.user_code
    );
    let expires = std::time::Instant::now() + std::time::Duration::from_secs(auth.expires_in);
    let mut backoff = Backoff::new(login.interval());
    let mut wait = login.interval();
    let tokens = loop {
        std::thread::sleep(wait);
        wait = login.interval();
        match login.poll() {
            Ok(PollOutcome::Pending) => backoff.reset(),
            Ok(PollOutcome::SlowDown) => println!("slowing down to every {:?}", login.interval()),
            Ok(PollOutcome::Done(tokens)) => break tokens,
            Err(e) if e.is_transient() && std::time::Instant::now() < expires => {
                wait = backoff.next(e.retry_after());
                println!("{e}; trying again in {wait:?}");
            }
            Err(e) => return Err(e),
        }
    };
    let user = device_client::user_name(&login.endpoints, &tokens.access_token)?;
    println!(
        "Signed in as {}; the access token expires at {} (Unix time)",
        user.as_deref().unwrap_or("(unknown)"),
        tokens.expires_at
    );
    Ok(())
}
