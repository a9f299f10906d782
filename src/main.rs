//! The `pos-etl` binary: parse the command line, run the command, report errors.

use std::process::ExitCode;

use clap::Parser;
use pos_etl::cli::{Cli, Command};
use pos_etl::config::{EnrichConfig, ProduceConfig, ReportConfig, StreamConfig};
use pos_etl::{commands, error};

// DataFusion allocates and frees many short-lived buffers; mimalloc does
// that faster than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pos-etl: {}", error::one_line(&error));
            ExitCode::from(error::exit_code(&error))
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Enrich(args) => commands::enrich::run(&EnrichConfig::try_from(args)?).await.map(drop),
        Command::Report(args) => commands::report::run(&ReportConfig::try_from(args)?).await.map(drop),
        Command::Stream(args) => commands::stream::run(&StreamConfig::try_from(args)?).await.map(drop),
        Command::Produce(args) => commands::produce::run(&ProduceConfig::try_from(args)?).await.map(drop),
        Command::Generate(args) => commands::generate::run(&args).map(drop),
        Command::Cluster(command) => commands::cluster::run(command).await,
    }
}
