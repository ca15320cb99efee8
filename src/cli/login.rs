//! `devicegate login`, `token` and `logout`: the device side, over `device_client`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::device_client::{self, Credentials, DeviceLogin, LoginError, PollOutcome, SavedLogin};
use crate::logging::printable;

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
    /// Allow plain http to a non-loopback server
    #[arg(long)]
    pub insecure: bool,
}

/// Refresh this long before the access token expires.
const REFRESH_MARGIN: u64 = 60;

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
            eprintln!("\nerror: {}", printable(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// `Err(None)`: cancelled by a signal.
fn login(args: &LoginArgs, cancelled: &AtomicBool) -> Result<(), Option<LoginError>> {
    let server = args.server.trim_end_matches('/').to_string();
    let mut login = DeviceLogin::start_with(
        &server,
        &args.client_id,
        args.scope.as_deref(),
        args.insecure,
    )?;
    let auth = login.authorization.clone();
    let terminal = std::io::stdout().is_terminal();
    // Both come from the server: escaped, so a hostile server cannot drive the terminal.
    println!();
    println!("  To sign in, open  {}", printable(&auth.verification_uri));
    println!("  and enter the code  {}", printable(&auth.user_code));
    println!();
    if let Some(complete) = &auth.verification_uri_complete {
        if let Some(qr) = qr_code(complete) {
            println!("{qr}");
            println!(
                "  Or scan this with your phone; the page will still ask you to check the code."
            );
            println!();
        }
        if args.open {
            let _ = std::process::Command::new("xdg-open")
                .arg(complete)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(auth.expires_in);
    let spinner = ['|', '/', '-', '\\'];
    let mut tick = 0usize;
    if !terminal {
        println!("waiting for approval");
    }
    loop {
        // Sleep the interval in small steps so Ctrl-C is prompt.
        let wake = Instant::now() + login.interval();
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
        match login.poll()? {
            PollOutcome::Pending => {}
            PollOutcome::SlowDown => {
                if !terminal {
                    println!(
                        "server asked to slow down; polling every {}s",
                        login.interval().as_secs()
                    );
                }
            }
            PollOutcome::Done(tokens) => {
                let mut credentials = Credentials::load()?;
                credentials.servers.insert(
                    server.clone(),
                    SavedLogin {
                        client_id: args.client_id.clone(),
                        endpoints: login.endpoints.clone(),
                        tokens,
                    },
                );
                credentials.save()?;
                let path = Credentials::path()?;
                println!(
                    "\r  Signed in. Tokens saved to {}          ",
                    path.display()
                );
                return Ok(());
            }
        }
    }
}

pub fn run_token(server: Option<&str>) -> ExitCode {
    match token(server) {
        Ok(access_token) => {
            println!("{access_token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", printable(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn token(server: Option<&str>) -> Result<String, LoginError> {
    let mut credentials = Credentials::load()?;
    let key = credentials.pick(server)?;
    let saved = credentials
        .servers
        .get(&key)
        .cloned()
        .ok_or_else(|| LoginError::Http("not logged in".into()))?;
    if saved.tokens.expires_at > device_client::unix_now() + REFRESH_MARGIN {
        return Ok(saved.tokens.access_token);
    }
    let refresh_token =
        saved.tokens.refresh_token.as_deref().ok_or_else(|| {
            LoginError::Http("the access token expired; run devicegate login".into())
        })?;
    let tokens = device_client::refresh(&saved.endpoints, &saved.client_id, refresh_token)?;
    let access_token = tokens.access_token.clone();
    credentials
        .servers
        .insert(key, SavedLogin { tokens, ..saved });
    credentials.save()?;
    Ok(access_token)
}

pub fn run_logout(server: Option<&str>) -> ExitCode {
    match logout(server) {
        Ok(key) => {
            println!("logged out of {}", printable(&key));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", printable(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn logout(server: Option<&str>) -> Result<String, LoginError> {
    let mut credentials = Credentials::load()?;
    let key = credentials.pick(server)?;
    if let Some(saved) = credentials.servers.get(&key) {
        // Revoking the refresh token ends the whole grant at the server.
        let (token, hint) = match &saved.tokens.refresh_token {
            Some(refresh) => (refresh.as_str(), "refresh_token"),
            None => (saved.tokens.access_token.as_str(), "access_token"),
        };
        device_client::revoke(&saved.endpoints, &saved.client_id, token, hint)?;
    }
    credentials.servers.remove(&key);
    credentials.save()?;
    Ok(key)
}

/// The URL as a QR code in Unicode half blocks (light on dark terminals read fine).
fn qr_code(url: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}
