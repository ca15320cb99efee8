//! `devicegate login`, `token`, `logout` and `status`: the device side, over `device_client`.
//! Errors are one line each, saying what to do next; never a Debug dump.

mod status;
mod terminal;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::device_client::{
    self, server_url, Backoff, Credentials, DeviceLogin, LoginError, PollOutcome, SavedLogin,
};
use crate::logging::printable;

pub use status::run_status;
pub use terminal::QrMode;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's base URL, e.g. https://auth.example.com
    #[arg(long, env = "DEVICEGATE_SERVER")]
    pub server: String,
    /// The client to log in as
    #[arg(long, default_value = "guest")]
    pub client_id: String,
    /// Space-separated scopes to ask for [default: the client's]
    #[arg(long)]
    pub scope: Option<String>,
    /// Open the verification page in a browser on this machine
    #[arg(long)]
    pub open: bool,
    /// The QR code: for a light or dark terminal, or none [default: from COLORFGBG, else drawn black on white]
    #[arg(long, env = "DEVICEGATE_QR", value_enum, ignore_case = true, default_value_t = QrMode::Auto, hide_default_value = true)]
    pub qr: QrMode,
    /// Allow plain http to a non-loopback server
    #[arg(long)]
    pub insecure: bool,
}

/// One line on stderr, exit 1.
fn fail(e: &LoginError) -> ExitCode {
    eprintln!("error: {}", printable(&e.to_string()));
    ExitCode::FAILURE
}

pub fn run_login(args: LoginArgs) -> ExitCode {
    let cancelled = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, Arc::clone(&cancelled));
    }
    match login(&args, &cancelled) {
        Ok(()) => ExitCode::SUCCESS,
        Err(None) => {
            eprintln!("\ncancelled");
            ExitCode::from(130)
        }
        Err(Some(e)) => {
            if std::io::stdout().is_terminal() {
                println!();
            }
            fail(&e)
        }
    }
}

/// `Err(None)`: cancelled by a signal.
fn login(args: &LoginArgs, cancelled: &AtomicBool) -> Result<(), Option<LoginError>> {
    let server = server_url(&args.server)?;
    // Before a code exists: an approved grant that cannot be saved would be orphaned.
    Credentials::check_saveable()?;
    let mut login = DeviceLogin::start_with(
        &server,
        &args.client_id,
        args.scope.as_deref(),
        args.insecure,
    )
    .map_err(|e| match e {
        // RFC 6749 §5.2: unknown, or confidential (this command has no secret to send).
        LoginError::OAuth { error, .. } if error == "invalid_client" => LoginError::Http(format!(
            "{server} does not know the client `{}` as a public client (unknown, or it needs a \
             secret, which devicegate login cannot send); pass --client-id with a public \
             client of that server (the default is guest)",
            args.client_id
        )),
        other => other,
    })?;
    let auth = login.authorization.clone();
    let terminal = std::io::stdout().is_terminal();
    let colour = terminal::styled(terminal);
    let where_to_go = terminal::where_to_go(
        "To sign in, open",
        &auth.verification_uri,
        &auth.user_code,
        colour,
    );
    println!();
    println!("{where_to_go}");
    let qr = auth
        .verification_uri_complete
        .as_deref()
        .and_then(|complete| terminal::qr_code(complete, args.qr, colour));
    match qr {
        // On an 80×24 screen the lines above scroll away under the QR code (21 rows for a
        // typical URL), so the address and the code follow it again, tightly.
        Some(qr) => {
            println!("  Or scan the QR code below; hard to scan? Try --qr light or --qr dark.");
            println!("{qr}");
            println!("{where_to_go}");
        }
        None => println!(),
    }
    if args.open {
        let page = auth
            .verification_uri_complete
            .as_deref()
            .unwrap_or(&auth.verification_uri);
        let scheme = page.split_once("://").map(|(scheme, _)| scheme);
        if !scheme
            .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
        {
            // A server could name a local file or another program's scheme here.
            eprintln!(
                "  Not opening {}: not an http(s) address; open the address above yourself.",
                printable(page)
            );
        } else {
            match webbrowser::open(page) {
                // A graphical browser is started in the background: whether it showed the
                // page is not known here, so say no more than that.
                Ok(()) => println!(
                    "  Asked a browser to open the page; if none appears, open the address above \
                     yourself."
                ),
                Err(e) => eprintln!(
                    "  Could not open a browser ({}); open the address above yourself.",
                    printable(&e.to_string())
                ),
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(auth.expires_in);
    let spinner = ['|', '/', '-', '\\'];
    let mut tick = 0usize;
    if !terminal {
        println!("waiting for approval");
    }
    let mut backoff = Backoff::new(login.interval());
    let mut wait = login.interval();
    loop {
        // Sleep in small steps so Ctrl-C is prompt.
        let wake = (Instant::now() + wait).min(deadline);
        while Instant::now() < wake {
            if cancelled.load(Ordering::SeqCst) {
                return Err(None);
            }
            if terminal {
                let left = deadline.saturating_duration_since(Instant::now()).as_secs();
                print!(
                    "\r  {} waiting for approval… {}:{:02} left ",
                    spinner[tick % spinner.len()],
                    left / 60,
                    left % 60
                );
                let _ = std::io::stdout().flush();
                tick += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        wait = login.interval();
        match login.poll() {
            Ok(PollOutcome::Pending) => backoff.reset(),
            Ok(PollOutcome::SlowDown) => {
                backoff = Backoff::new(login.interval());
                wait = login.interval();
                if !terminal {
                    println!(
                        "server asked to slow down; polling every {}s",
                        wait.as_secs()
                    );
                }
            }
            Ok(PollOutcome::Done(tokens)) => return Ok(finish(args, &server, &login, tokens)?),
            // RFC 8628 §3.5: a server restarting or failing for now is waited for, with
            // backoff, for as long as the code lives.
            Err(e) if e.is_transient() => {
                if Instant::now() >= deadline {
                    return Err(Some(LoginError::Expired));
                }
                wait = backoff.next(e.retry_after());
                if terminal {
                    println!();
                }
                eprintln!(
                    "{}; trying again in {}s",
                    printable(&e.to_string()),
                    wait.as_secs()
                );
            }
            Err(e) => return Err(Some(e)),
        }
    }
}

/// Saves the new login, then revokes the one it replaces (RFC 7009), then says who is
/// signed in.
fn finish(
    args: &LoginArgs,
    server: &str,
    login: &DeviceLogin,
    tokens: device_client::Tokens,
) -> Result<(), LoginError> {
    let user = match device_client::user_name(&login.endpoints, &tokens.access_token) {
        Ok(user) => user,
        Err(e) => {
            eprintln!(
                "warning: cannot ask who signed in: {}",
                printable(&e.to_string())
            );
            None
        }
    };
    let previous = Credentials::locked(|| {
        let mut credentials = Credentials::load()?;
        let previous = credentials.servers.insert(
            server.to_string(),
            SavedLogin {
                client_id: args.client_id.clone(),
                endpoints: login.endpoints.clone(),
                tokens,
                user: user.clone(),
            },
        );
        credentials.save()?;
        Ok(previous)
    })?;
    let path = Credentials::path()?;
    // On a terminal the line overwrites the countdown; into a pipe or a file, no `\r` or
    // padding.
    let (start, pad) = if std::io::stdout().is_terminal() {
        ("\r", "          ")
    } else {
        ("", "")
    };
    match &user {
        Some(user) => println!(
            "{start}  Signed in to {} as {}.{pad}",
            printable(server),
            printable(user)
        ),
        None => println!("{start}  Signed in to {}.{pad}", printable(server)),
    }
    println!("  Tokens saved to {}", path.display());
    if let Some(previous) = previous {
        // The earlier login on this device would otherwise live on at the server, unused.
        match revoke_saved(&previous) {
            Ok(()) => println!("  The previous login to this server was revoked."),
            Err(e) => eprintln!(
                "warning: could not revoke the previous login to {} ({}); it stays valid until \
                 it expires or is revoked on the account page",
                printable(server),
                printable(&e.to_string())
            ),
        }
    }
    Ok(())
}

/// Revoking the refresh token ends the whole grant at the server.
fn revoke_saved(saved: &SavedLogin) -> Result<(), LoginError> {
    let (token, hint) = match &saved.tokens.refresh_token {
        Some(refresh) => (refresh.as_str(), "refresh_token"),
        None => (saved.tokens.access_token.as_str(), "access_token"),
    };
    device_client::revoke(&saved.endpoints, &saved.client_id, token, hint)
}

pub fn run_token(server: Option<&str>, force_refresh: bool) -> ExitCode {
    match device_client::access_token(server, force_refresh) {
        Ok((access_token, unrenewed)) => {
            if let Some(e) = unrenewed {
                eprintln!(
                    "warning: could not renew the access token ({}); using the saved one \
                     until it expires",
                    printable(&e.to_string())
                );
            }
            println!("{access_token}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

pub fn run_logout(server: Option<&str>) -> ExitCode {
    match logout(server) {
        Ok((key, revoked)) => {
            if let Err(e) = revoked {
                // Never stuck with a login nobody can end: forgotten here either way.
                eprintln!(
                    "warning: could not revoke the login at {} ({}); forgot it here anyway, \
                     it stays valid until it expires or is revoked on the account page",
                    printable(&key),
                    printable(&e.to_string())
                );
            }
            println!("logged out of {}", printable(&key));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// Revokes the saved login at its server (RFC 7009) and forgets it here, also when the
/// revocation failed (server unreachable, client removed): that result comes back beside
/// the server's key for a warning.
fn logout(server: Option<&str>) -> Result<(String, Result<(), LoginError>), LoginError> {
    Credentials::load()?.pick(server)?;
    Credentials::locked(|| {
        let mut credentials = Credentials::load()?;
        let key = credentials.pick(server)?;
        let revoked = match credentials.servers.get(&key) {
            Some(saved) => revoke_saved(saved),
            None => Ok(()),
        };
        credentials.servers.remove(&key);
        credentials.save()?;
        Ok((key, revoked))
    })
}
