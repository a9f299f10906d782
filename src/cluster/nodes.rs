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
use datafusion::execution::context::SessionConfig;

use crate::pipeline;

/// How a scheduler is run.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Where it listens for clients and executors.
    pub bind: SocketAddr,
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
    let config = SchedulerConfig {
        bind_host: settings.bind.ip().to_string(),
        bind_port: settings.bind.port(),
        executor_timeout_seconds: settings.executor_timeout.as_secs().max(1),
        no_executors_grace_period_seconds: settings.executor_timeout.as_secs().max(1),
        expire_dead_executor_interval_seconds: (settings.executor_timeout.as_secs() / 4).clamp(1, 15),
        override_session_builder: Some(Arc::new(|config: SessionConfig| {
            let mut state = ballista_core::utils::default_session_builder(config)?;
            pipeline::register_functions(&mut state)?;
            Ok(state)
        })),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config).await.context("starting the scheduler")?;
    tokio::spawn(say_when_listening(settings.bind));
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
    // Ballista's registry does not implement registering: its maps are filled.
    let mut registry = BallistaFunctionRegistry::default();
    let (scalar, window) = pipeline::own_functions();
    registry.scalar_functions.extend(scalar.into_iter().map(|function| (function.name().to_string(), function)));
    registry.window_functions.extend(window.into_iter().map(|function| (function.name().to_string(), function)));
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

/// Says on stderr, once, that the scheduler is listening: when its port
/// takes a connection (for whoever starts it and waits for it).
async fn say_when_listening(bind: SocketAddr) {
    let mut address = bind;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    while tokio::net::TcpStream::connect(address).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("pos-etl: scheduler listening on {bind}");
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
