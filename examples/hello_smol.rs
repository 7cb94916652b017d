//! A hello-world hyper server on smol that drains on Ctrl-C or SIGTERM.
//!
//! ```text
//! cargo run --example hello_smol --features smol,hyper
//! curl http://127.0.0.1:3000/          # hello
//! curl http://127.0.0.1:3000/slow/5000 # then press Ctrl-C: this request still completes
//! ```
//!
//! The first signal starts a graceful drain (10 s deadline, `WIND_DOWN_DEADLINE_MS`
//! to change it); a second one forces it. The exit status is 0 when drained, 1 when
//! forced. `WIND_DOWN_ADDR` sets the address (default 127.0.0.1:3000). With the
//! `systemd` feature it serves on the socket systemd passes (socket activation),
//! if any, and tells systemd when it is ready and how the drain goes. On Windows,
//! only Ctrl-C is caught (see `wind_down::smol::Signals`).

#[path = "common/app.rs"]
mod app;

use std::sync::Arc;

use wind_down::smol::{Signals, Smol};

/// Worker threads running the executor, besides the main thread.
const WORKERS: usize = 2;

pub fn main() -> std::io::Result<std::process::ExitCode> {
    // Register the signal handlers first: a signal from now on starts the drain.
    let signals = Signals::new()?;
    let executor = Arc::new(smol::Executor::new());
    // Closed when the server is done: the workers stop running the executor.
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let outcome = std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            let executor = &executor;
            let stopped = stopped.clone();
            scope.spawn(move || smol::block_on(executor.run(stopped.recv())));
        }
        let outcome = smol::block_on(executor.run(async {
            let listener = smol::net::TcpListener::try_from(app::listener(&app::addr_from_env())?)?;
            // With the `upgrade` feature, SIGUSR2 hands the socket to a new process.
            #[cfg(feature = "upgrade")]
            let signals =
                app::upgradable(&listener, signals, wind_down::smol::UpgradeSignal::new()?)?;
            let runtime = Smol::new(executor.clone());
            std::io::Result::Ok(
                app::run(runtime, listener, signals, app::deadline_from_env()).await,
            )
        }));
        drop(stop);
        outcome
    })?;
    Ok(outcome.into()) // 0 drained, 1 forced
}
