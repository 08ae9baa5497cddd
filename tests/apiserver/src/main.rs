//! `kroxide-apiserver`: runs the in-memory Kubernetes API server until interrupted.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use kroxide_apiserver::{ApiServer, Config};

/// An in-memory Kubernetes API server for tests and demos. State is lost on exit.
#[derive(Debug, Parser)]
#[command(name = "kroxide-apiserver", version)]
struct Args {
    /// Address to listen on (loopback only; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig for the server to this file.
    #[arg(long, value_name = "FILE")]
    kubeconfig_out: Option<PathBuf>,
    /// Do not simulate workload status (Deployments stay without status).
    #[arg(long)]
    no_workload_simulation: bool,
    /// Milliseconds a simulated workload takes to become ready.
    #[arg(long, default_value_t = 500)]
    workload_delay_ms: u64,
    /// Milliseconds a new CRD takes to become Established.
    #[arg(long, default_value_t = 0)]
    establish_delay_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = Config {
        listen: args.listen,
        simulate_workloads: !args.no_workload_simulation,
        workload_delay: Duration::from_millis(args.workload_delay_ms),
        establish_delay: Duration::from_millis(args.establish_delay_ms),
        ..Config::default()
    };
    let server = match ApiServer::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the API server on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.kubeconfig_out
        && let Err(e) = std::fs::write(path, server.kubeconfig())
    {
        eprintln!("error: cannot write the kubeconfig to {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("{}", server.url());
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}
