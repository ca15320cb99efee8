//! The boot checklist: parse the CLI → load and validate config → open the store →
//! first-run bootstrap → bind → run until a signal.

use std::process::ExitCode;

use clap::Parser;

use devicegate::cli::{run_admin, Cli, Command};
use devicegate::config::log_level_filter;
use devicegate::{logging, Server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args.into_config(cli.db)),
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
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let flag = server.handle().shutdown_flag();
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
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
