//! The boot checklist: parse the CLI → load and validate config → open the store →
//! first-run bootstrap → bind → run until a signal.

use std::process::ExitCode;

use clap::Parser;
use serde_json::json;

use std::io::IsTerminal;

use devicegate::bootstrap::{first_start, FirstAdmin, FirstAdminError, FIRST_ADMIN};
use devicegate::cli::{login, run_admin, Cli, Command};
use devicegate::config::log_level_filter;
use devicegate::store::Store;
use devicegate::{logging, Clock, Server};

fn main() -> ExitCode {
    devicegate::metrics::record_start();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match cli.command {
        Command::Serve(args) => serve(args.into_config(cli.db)),
        Command::Login(args) => login::run_login(args),
        Command::Token { server, refresh } => login::run_token(server.as_deref(), refresh),
        Command::Logout { server } => login::run_logout(server.as_deref()),
        Command::Status {
            server,
            json,
            offline,
        } => login::run_status(server.as_deref(), json, offline),
        command => {
            // Info: admin actions write an audit line (`audit: … by …`) to stderr.
            logging::init(log::LevelFilter::Info);
            run_admin(&cli.db, command)
        }
    }
}

fn serve(config: Result<devicegate::Config, Vec<String>>) -> ExitCode {
    let config = match config.and_then(|c| c.validate().map(|()| c)) {
        Ok(config) => config,
        Err(problems) => {
            for problem in devicegate::cli::name_origins(problems) {
                eprintln!("error: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    logging::init(log_level_filter(&config.log_level).unwrap_or(log::LevelFilter::Info));
    let db_path = config.db_path.clone();
    // Nothing is created for this check, so it may come before the bind.
    if let Some(problem) = devicegate::cli::missing_directory(&db_path) {
        eprintln!("error: {problem}");
        return ExitCode::FAILURE;
    }
    // Bind (in `Server::bind`) before `admin` exists: a busy port must not cost the only
    // showing of its password.
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Under systemd or in a container stdout is the journal: the password goes to a
    // private file there, and only the file's path to the log.
    let to_file = !std::io::stdout().is_terminal();
    let first_admin = match Store::open(&db_path)
        .map_err(FirstAdminError::Store)
        .and_then(|store| first_start(&store, &db_path, to_file, Clock::system().now()))
    {
        Ok(first_admin) => first_admin,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let flag = server.handle().shutdown_flag();
    // A full disk or a file-size limit must surface as a write error (a 503), not kill us.
    let ignored = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGXFSZ, ignored) {
        eprintln!("error: cannot handle SIGXFSZ: {e}");
        return ExitCode::FAILURE;
    }
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, std::sync::Arc::clone(&flag)) {
            eprintln!("error: cannot handle signal {signal}: {e}");
            return ExitCode::FAILURE;
        }
    }
    log::info!(
        "listening on {} (issuer {})",
        server.local_addr(),
        server.issuer()
    );
    announce(&first_admin, server.issuer(), &db_path);
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Tells the operator about the first start's `admin`, once, and how to get out of a lost
/// password: `devicegate user passwd admin`.
fn announce(first_admin: &FirstAdmin, issuer: &str, db: &std::path::Path) {
    let passwd = format!(
        "devicegate --db {} user passwd {FIRST_ADMIN}",
        shell_quote(&devicegate::store::describe(db))
    );
    // The same URL the server serves the page at, whatever the issuer's trailing `/`.
    let mounts = devicegate::paths::Mounts::from_issuer(issuer);
    let page = mounts.root().url(devicegate::paths::VERIFICATION_PATH);
    match first_admin {
        FirstAdmin::Show(password) => {
            // To the terminal only: the log may be shipped elsewhere.
            println!();
            println!("  First start: created the user `{FIRST_ADMIN}`.");
            println!("  Password: {password}");
            println!("  It is shown only this once. Sign in at {page}");
            println!("  Lost it? Set a new one with `{passwd}`.");
            println!();
        }
        // `info`, the default level: news, not a fault (a reminder on later starts is one).
        FirstAdmin::InFile(path) => log::info!(
            "first start: created the user `{FIRST_ADMIN}`; its password is in {} (mode 0600). \
             Sign in at {page}, then delete the file. Lost it? Set a new one \
             with `{passwd}`",
            path.display()
        ),
        FirstAdmin::Existing {
            reminder: Some(path),
        } => log::warn!(
            "the first start's password for `{FIRST_ADMIN}` is still in {}: sign in, set your \
             own with `{passwd}`, and delete the file",
            path.display()
        ),
        FirstAdmin::Existing { reminder: None } => {}
    }
}

/// `s` as one POSIX shell word: as it is when it needs no quoting, else in single quotes.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The command line; on a bad value, every bad value from the environment at once (each
/// such variable is set aside and the line parsed again), and for `check --json` a JSON
/// report instead of clap's text. `Err`: the exit code, after printing.
fn parse() -> Result<Cli, ExitCode> {
    let mut problems = Vec::new();
    let first = loop {
        let e = match Cli::try_parse() {
            Ok(cli) if problems.is_empty() => return Ok(cli),
            Ok(_) => break None,
            Err(e) => e,
        };
        use clap::error::ErrorKind;
        if !matches!(
            e.kind(),
            ErrorKind::ValueValidation | ErrorKind::InvalidValue
        ) {
            if problems.is_empty() {
                e.exit();
            }
            break None;
        }
        let message = e.to_string();
        let line = message.lines().next().unwrap_or_default();
        problems.push(line.strip_prefix("error: ").unwrap_or(line).to_string());
        // A value from the environment: set it aside and look for the next one.
        match devicegate::cli::env_of_error(&e) {
            Some(env) if problems.len() < 64 => std::env::remove_var(env),
            _ => break Some(e),
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "check") && args.iter().any(|a| a == "--json") {
        println!(
            "{}",
            json!({
                "ok": false,
                "configuration": {"ok": false, "problems": problems, "warnings": []},
                "listen": null,
                "database": null,
            })
        );
        return Err(ExitCode::from(2));
    }
    if problems.len() == 1 {
        if let Some(e) = first {
            e.exit();
        }
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    Err(ExitCode::from(2))
}
