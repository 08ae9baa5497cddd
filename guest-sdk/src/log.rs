//! Logging routed to the host's `log` import, and the panic hook that reports a panic's message.
//!
//! In a component, every line goes to the host, which writes it to its own logs with the
//! plugin's name and digest and keeps the last line to explain a trap. Under `cargo test`
//! (native), lines are kept per thread so [`crate::testing`] can show them, and echoed to stderr.

use std::sync::Once;

pub use crate::bindings::Level;

/// Sends one line to the host.
pub fn emit(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::kroxide::plugin::log::emit(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    native::emit(level, message);
}

/// Installs, once, a panic hook that logs the panic's message and location at `error` level
/// before the guest traps, so the host can report *why* the plugin stopped.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(not(target_arch = "wasm32"))]
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "Box<dyn Any>".to_string()
            };
            let line = match info.location() {
                Some(at) => format!("panicked at {}:{}: {message}", at.file(), at.line()),
                None => format!("panicked: {message}"),
            };
            emit(Level::Error, &line);
            #[cfg(not(target_arch = "wasm32"))]
            previous(info);
        }));
    });
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    use std::cell::RefCell;

    use super::Level;

    thread_local! {
        static LINES: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn emit(level: Level, message: &str) {
        eprintln!("[plugin {}] {message}", super::level_name(level));
        LINES.with(|l| l.borrow_mut().push((level, message.to_string())));
    }

    /// Takes the lines logged on this thread since the last call.
    pub(crate) fn take() -> Vec<(Level, String)> {
        LINES.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }
}

/// The lower-case name of a level, as the host prints it.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// Logs at `trace` level: `kroxide_plugin::trace!("x = {x}")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::emit($crate::log::Level::Trace, &::std::format!($($arg)+)) };
}

/// Logs at `debug` level: `kroxide_plugin::debug!("x = {x}")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::emit($crate::log::Level::Debug, &::std::format!($($arg)+)) };
}

/// Logs at `info` level: `kroxide_plugin::info!("x = {x}")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::emit($crate::log::Level::Info, &::std::format!($($arg)+)) };
}

/// Logs at `warn` level: `kroxide_plugin::warn!("x = {x}")`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::emit($crate::log::Level::Warn, &::std::format!($($arg)+)) };
}

/// Logs at `error` level: `kroxide_plugin::error!("x = {x}")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::emit($crate::log::Level::Error, &::std::format!($($arg)+)) };
}
