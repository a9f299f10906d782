//! Integration tests of the `pos-etl` binary, one module per subcommand
//! (one test binary, one link step).

mod cluster;
mod common;
mod delta;
mod enrich_rules;
mod enrich_runs;
mod generate;
mod incremental;
mod inputs;
mod kafka;
mod outputs;
mod postgres;
mod objects;
mod properties;
mod report;
mod stream;
