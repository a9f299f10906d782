//! The `pos-etl` binary: parse the command line, run the command, report errors.

use std::process::ExitCode;

use clap::Parser;
use pos_etl::cli::{Cli, Command};
use pos_etl::config::EnrichConfig;
use pos_etl::{commands, error};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Enrich(args) => match EnrichConfig::try_from(args) {
            Ok(config) => commands::enrich::run(&config).await.map(drop),
            Err(usage) => {
                eprintln!("pos-etl: {usage}");
                return ExitCode::from(2);
            }
        },
        Command::Generate(args) => commands::generate::run(&args).map(drop),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pos-etl: {error:#}");
            ExitCode::from(error::exit_code(&error))
        }
    }
}
