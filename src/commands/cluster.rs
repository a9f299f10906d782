//! `pos-etl cluster scheduler|executor`: the processes of a Ballista cluster.

use crate::cli::{ClusterCommand, ExecutorArgs, SchedulerArgs};
use crate::cluster::nodes::{self, ExecutorSettings, SchedulerSettings};

/// Runs the process `command` names until it is stopped.
pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    nodes::init_logging();
    match command {
        ClusterCommand::Scheduler(args) => nodes::run_scheduler(scheduler(args)).await,
        ClusterCommand::Executor(args) => nodes::run_executor(executor(args)).await,
    }
}

fn scheduler(args: SchedulerArgs) -> SchedulerSettings {
    SchedulerSettings { bind: args.bind, executor_timeout: args.executor_timeout }
}

fn executor(args: ExecutorArgs) -> ExecutorSettings {
    let concurrent_tasks = args
        .concurrent_tasks
        .map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |n| n as usize);
    ExecutorSettings {
        scheduler_host: args.scheduler.host,
        scheduler_port: args.scheduler.port,
        bind: args.bind,
        grpc_port: args.grpc_port.unwrap_or(args.bind.port().saturating_add(1)),
        external_host: args.external_host,
        concurrent_tasks,
        work_dir: args.work_dir,
        memory_limit: args.memory_limit,
        heartbeat: args.heartbeat,
    }
}
