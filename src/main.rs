//! The `pos-etl` binary: parse the command line, run the command, report errors.

use std::process::ExitCode;

use clap::Parser;
use pos_etl::cli::Cli;
use pos_etl::{commands, error};

// DataFusion allocates and frees many short-lived buffers; mimalloc does
// that faster than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match commands::run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pos-etl: {}", error::one_line(&error));
            ExitCode::from(error::exit_code(&error))
        }
    }
}
