#![doc = include_str!("../README.md")]

pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod enrichment;
pub mod error;
pub mod incremental;
pub mod metrics;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod simulation;
pub mod sinks;
pub mod sources;
pub mod storage;
pub mod summary;
