//! A device logging in with devicegate's client library, the same code `devicegate login`
//! uses. Run a server (`cargo run -- serve`), then:
//!
//!     cargo run --example login -- http://127.0.0.1:8080
//!
//! and approve the printed code in a browser (or `devicegate approve CODE --user admin`).

use devicegate::device_client::{DeviceLogin, LoginError, PollOutcome};

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
    let tokens = loop {
        std::thread::sleep(login.interval());
        match login.poll()? {
            PollOutcome::Pending => {}
            PollOutcome::SlowDown => println!("slowing down to every {:?}", login.interval()),
            PollOutcome::Done(tokens) => break tokens,
        }
    };
    println!(
        "Signed in; the access token expires at {} (Unix time)",
        tokens.expires_at
    );
    Ok(())
}
