//! `kroxide controller`: runs the controller until SIGINT or SIGTERM. The first signal drains
//! in-flight reconciles (up to `--graceful-shutdown-timeout`); a second one exits at once.

use tracing_subscriber::EnvFilter;

use super::error::Error;
use crate::config::{ControllerArgs, ControllerConfig, LogFormat};

/// Sets up logging: `RUST_LOG` when set, else `--log-level`.
pub(crate) fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second initialisation (tests, the demo) keeps the first subscriber.
    let _ = match format {
        LogFormat::Console => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves once SIGINT or SIGTERM arrives; a second signal exits the process.
pub(crate) async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the controller with `args` until signalled.
///
/// # Errors
/// An invalid flag, no API connection, or the plugin runtime cannot start.
pub(crate) fn run(args: &ControllerArgs) -> Result<(), Error> {
    let config = ControllerConfig::from_args(args)?;
    let (level, format) = crate::config::logging(args)?;
    init_logging(&level, format);
    let ignored = args.kro.ignored();
    if !ignored.is_empty() {
        tracing::info!(flags = ?ignored, "kro's flags accepted; they change nothing in kroxide (docs/migration.md)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    rt.block_on(crate::controller::run(config, shutdown_signal()))?;
    Ok(())
}
