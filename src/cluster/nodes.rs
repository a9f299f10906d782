//! The processes of a Ballista cluster, from pos-etl's own binary so that
//! they know its functions: `pos-etl cluster scheduler` and `pos-etl
//! cluster executor`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionConfig;

use crate::pipeline;

/// How a scheduler is run.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Where it listens for clients and executors.
    pub bind: SocketAddr,
    /// The name executors and clients reach it by, if not the bind address.
    pub external_host: Option<String>,
    /// How long an executor may go without a heartbeat before its tasks
    /// are run again elsewhere.
    pub executor_timeout: Duration,
}

/// How an executor is run.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// The scheduler's host.
    pub scheduler_host: String,
    /// The scheduler's port.
    pub scheduler_port: u16,
    /// Where it serves its results (Arrow Flight).
    pub bind: SocketAddr,
    /// Its gRPC port, on the bind address.
    pub grpc_port: u16,
    /// The name the scheduler and the other executors reach it by.
    pub external_host: Option<String>,
    /// Tasks run at once.
    pub concurrent_tasks: usize,
    /// Where it keeps the shuffle files of running jobs.
    pub work_dir: Option<PathBuf>,
    /// Memory its tasks share before they spill.
    pub memory_limit: Option<u64>,
    /// How often it tells the scheduler it is alive.
    pub heartbeat: Duration,
}

/// Logs of the Ballista crates go to stderr, at info unless RUST_LOG says otherwise.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
}

/// Runs a scheduler until SIGINT or SIGTERM.
pub async fn run_scheduler(settings: SchedulerSettings) -> anyhow::Result<()> {
    let external_host = settings.external_host.unwrap_or_else(|| settings.bind.ip().to_string());
    let config = SchedulerConfig {
        bind_host: settings.bind.ip().to_string(),
        bind_port: settings.bind.port(),
        external_host,
        executor_timeout_seconds: settings.executor_timeout.as_secs().max(1),
        no_executors_grace_period_seconds: settings.executor_timeout.as_secs().max(1),
        expire_dead_executor_interval_seconds: (settings.executor_timeout.as_secs() / 4).clamp(1, 15),
        override_session_builder: Some(Arc::new(|config: SessionConfig| {
            let mut state = ballista_core::utils::default_session_builder(config)?;
            let pipeline::OwnFunctions { scalar, window } = pipeline::own_functions();
            for function in scalar {
                state.register_udf(Arc::new(function))?;
            }
            for function in window {
                state.register_udwf(Arc::new(function))?;
            }
            Ok(state)
        })),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config).await.context("starting the scheduler")?;
    eprintln!("pos-etl: scheduler listening on {}", settings.bind);
    tokio::select! {
        served = start_server(cluster, settings.bind, Arc::new(config)) => served.with_context(|| format!("scheduler on {}", settings.bind)),
        () = stop_signal() => {
            eprintln!("pos-etl: scheduler stopped");
            Ok(())
        }
    }
}

/// Runs an executor until SIGINT or SIGTERM (its running tasks are
/// drained first) or until the scheduler stops it.
pub async fn run_executor(settings: ExecutorSettings) -> anyhow::Result<()> {
    let pipeline::OwnFunctions { scalar, window } = pipeline::own_functions();
    let mut registry = BallistaFunctionRegistry::default();
    for function in scalar {
        registry.scalar_functions.insert(function.name().to_string(), Arc::new(function));
    }
    for function in window {
        registry.window_functions.insert(function.name().to_string(), Arc::new(function));
    }
    let config = ExecutorProcessConfig {
        bind_host: settings.bind.ip().to_string(),
        port: settings.bind.port(),
        grpc_port: settings.grpc_port,
        external_host: settings.external_host,
        scheduler_host: settings.scheduler_host.clone(),
        scheduler_port: settings.scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: settings.concurrent_tasks,
        work_dir: settings.work_dir.map(|dir| dir.display().to_string()),
        memory_pool_size: settings.memory_limit,
        executor_heartbeat_interval_seconds: settings.heartbeat.as_secs().max(1),
        override_function_registry: Some(Arc::new(registry)),
        print_thread_info: false,
        ..Default::default()
    };
    let health = config.health.clone();
    let scheduler = format!("{}:{}", settings.scheduler_host, settings.scheduler_port);
    let id = config.executor_id.clone();
    // Said once, for whoever starts the executor and waits for it.
    tokio::spawn(async move {
        while !health.is_ready() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("pos-etl: executor {id} registered with the scheduler at {scheduler}");
    });
    start_executor_process(Arc::new(config)).await.context("running the executor")
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
