//! A hello-world hyper server on tokio that drains on Ctrl-C or SIGTERM.
//!
//! ```text
//! cargo run --example hello --features tokio,hyper
//! curl http://127.0.0.1:3000/          # hello
//! curl http://127.0.0.1:3000/slow/5000 # then press Ctrl-C: this request still completes
//! ```
//!
//! The first signal starts a graceful drain (10 s deadline, `WIND_DOWN_DEADLINE_MS`
//! to change it); a second one forces it. The exit status is 0 when drained, 1 when
//! forced. `WIND_DOWN_ADDR` sets the address (default 127.0.0.1:3000). With the
//! `systemd` feature it serves on the socket systemd passes (socket activation),
//! if any, and tells systemd when it is ready and how the drain goes. With the
//! `upgrade` feature, SIGUSR2 starts a new generation of the program that takes
//! the socket over; this one drains once the new one is ready:
//!
//! ```text
//! cargo run --example hello --features tokio,hyper,upgrade
//! curl http://127.0.0.1:3000/pid       # the serving process
//! kill -USR2 <pid>                     # a new process serves; this one drains
//! ```

#[path = "common/app.rs"]
mod app;

use std::process::ExitCode;

use wind_down::tokio::{Signals, Tokio};

pub fn main() -> std::io::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        // Install the signal handlers first: a signal from now on starts the drain.
        let signals = Signals::new()?;
        let listener = tokio::net::TcpListener::from_std(app::listener(&app::addr_from_env())?)?;
        // With the `upgrade` feature, SIGUSR2 hands the socket to a new process.
        #[cfg(feature = "upgrade")]
        let signals = app::upgradable(&listener, signals, wind_down::tokio::UpgradeSignal::new()?)?;
        std::io::Result::Ok(
            app::run(
                Tokio::current(),
                listener,
                signals,
                app::deadline_from_env(),
            )
            .await,
        )
    })?;
    Ok(outcome.into()) // 0 drained, 1 forced
}
