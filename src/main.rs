//! The boot checklist: parse the CLI → load and validate config → open the store →
//! first-run bootstrap → bind → run until a signal.

use std::process::ExitCode;

use clap::Parser;

use devicegate::bootstrap::{ensure_first_admin, FIRST_ADMIN};
use devicegate::cli::{login, run_admin, Cli, Command};
use devicegate::config::log_level_filter;
use devicegate::store::{self, Store};
use devicegate::{logging, Clock, Server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args.into_config(cli.db)),
        Command::Login(args) => login::run_login(args),
        Command::Token { server } => login::run_token(server.as_deref()),
        Command::Logout { server } => login::run_logout(server.as_deref()),
        Command::Status { server, json } => login::run_status(server.as_deref(), json),
        command => {
            logging::init(log::LevelFilter::Warn);
            run_admin(&cli.db, command)
        }
    }
}

fn serve(config: devicegate::Config) -> ExitCode {
    logging::init(log_level_filter(&config.log_level).unwrap_or(log::LevelFilter::Info));
    if let Err(problems) = config.validate() {
        for problem in problems {
            eprintln!("error: {problem}");
        }
        return ExitCode::from(2);
    }
    let first_admin = match first_admin(&config) {
        Ok(password) => password,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(config) {
        Ok(server) => server,
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
    if let Some(password) = first_admin {
        // To the terminal only: the log may be shipped elsewhere.
        println!();
        println!("  First start: created the user `{FIRST_ADMIN}`.");
        println!("  Password: {password}");
        println!(
            "  It is shown only this once. Sign in at {}/oauth/device",
            server.issuer()
        );
        println!();
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn first_admin(config: &devicegate::Config) -> Result<Option<String>, store::Error> {
    let store = Store::open(&config.db_path)?;
    ensure_first_admin(&store, Clock::system().now())
}
