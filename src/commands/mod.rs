//! One module per subcommand; each turns a checked config into a run.

pub mod enrich;
pub mod generate;
pub mod produce;
pub mod report;
