//! Migration guides: the calls of the crates people switch from, mapped to
//! wind-down's, and the differences that remain on purpose: hyper-util,
//! tokio-util, swansong, tokio-graceful, axum and tonic.
//!
//! Five differences apply to every guide below:
//!
//! 1. **Nothing is admitted after the drain.** [`Shutdown::guard`],
//!    [`Shutdown::watch`] and [`Shutdown::track`] are [`Refused`] once the
//!    coordinator drained (or was forced), so that "drained" stays true. Between the
//!    trigger and the drain they still work: whether a guard taken after the trigger
//!    is refused depends on whether the drain already completed.
//! 2. **Tracked work after the drain never runs, and says so**: its future resolves
//!    to `Err(Stopped::Refused(Refused::Drained))` without polling the inner one.
//! 3. **`run_until_triggered` prefers the trigger**: when completion and trigger
//!    are both ready at one poll it returns `None` (tokio-util's
//!    `run_until_cancelled` returns the output).
//! 4. **There is a deadline.** [`Server`] forces what is left when its [grace
//!    period](Server::grace_period) is over (25 s by default), and
//!    [`Shutdown::drain_until`] takes a deadline; axum and hyper-util wait for ever.
//! 5. **A first signal announces**, and triggers the drain at once unless the
//!    server has a [drain delay](Server::drain_delay); a second one forces.
//!    Dropping the last handle of a root coordinator triggers it (a
//!    `CancellationToken` is not cancelled by its drop).
//!
//! # From hyper-util's `GracefulShutdown`
//!
//! | hyper-util | wind-down |
//! |---|---|
//! | `GracefulShutdown::new()` | [`Shutdown::new()`] |
//! | `graceful.watch(conn)` | [`shutdown.watch(conn)`](Shutdown::watch), a future to spawn |
//! | `graceful.watcher()` | [`shutdown.guard()`](Shutdown::guard): it holds the drain as a watcher does (a `shutdown.clone()` is a handle only, and does not) |
//! | `graceful.count()` | [`shutdown.report().remaining`](Shutdown::report) |
//! | `select! { graceful.shutdown() => .., sleep(d) => .. }` | [`shutdown.drain_until(sleep(d))`](Shutdown::drain_until): triggers, waits, forces at the deadline (connections still open are dropped; after hyper-util's `select!` they keep running) |
//! | the accept loop, `ctrl_c()` and the `select!` around it | [`Http::new(Server::new(rt, listener).signals(Signals::new()?)).serve(svc)`](crate::hyper::Http::serve) |
//!
//! Before, in words: an accept loop `select!`s `listener.accept()` against
//! `ctrl_c()`, serves each connection with `graceful.watch(conn)`, and after the
//! loop races `graceful.shutdown()` against a sleep. After, the same loop with
//! wind-down (or all of it in one [`Server`] call):
//!
//! ```
//! # #[cfg(all(feature = "tokio", feature = "hyper"))]
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! use std::time::Duration;
//!
//! use hyper::{Response, server::conn::http1, service::service_fn};
//! use hyper_util::rt::TokioIo;
//! use wind_down::Shutdown;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = Shutdown::new(); // was: GracefulShutdown::new()
//! let accepting = {
//!     let shutdown = shutdown.clone();
//!     tokio::spawn(async move {
//!         loop {
//!             let stop = async {
//!                 shutdown.triggered().await; // was: the ctrl_c() arm of the select!
//!                 None
//!             };
//!             let accept = async { Some(listener.accept().await) };
//!             let Some(Ok((stream, _))) = futures_lite::future::or(stop, accept).await else {
//!                 break;
//!             };
//!             let hello = service_fn(|_| async {
//!                 Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!             });
//!             let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), hello);
//!             tokio::spawn(shutdown.watch(conn)); // was: graceful.watch(conn)
//!         }
//!     })
//! };
//! shutdown.trigger(); // Ctrl-C, in this example
//! accepting.await.unwrap();
//! // was: select! { graceful.shutdown() => .., sleep(10 s) => .. }
//! let outcome = shutdown.drain_until(tokio::time::sleep(Duration::from_secs(10))).await;
//! assert!(outcome.is_drained());
//! # Ok(()) }
//! # #[cfg(not(all(feature = "tokio", feature = "hyper")))]
//! # fn main() {}
//! ```
//!
//! # From tokio-util's `CancellationToken` and `TaskTracker`
//!
//! One [`Shutdown`] is both: the token's cancellation is the trigger, the
//! tracker's tasks are watchers, and its `close` + `wait` is the drain.
//!
//! | tokio-util | wind-down |
//! |---|---|
//! | `CancellationToken::new()`, `TaskTracker::new()` | [`Shutdown::new()`] |
//! | `token.cancel()`, `tracker.close()` | [`shutdown.trigger()`](Shutdown::trigger) |
//! | `token.cancelled().await` | [`shutdown.triggered().await`](Shutdown::triggered) |
//! | `token.is_cancelled()` | [`shutdown.phase() >= Phase::Triggered`](Shutdown::phase) |
//! | `token.child_token()` | [`shutdown.child()`](Shutdown::child) |
//! | `token.run_until_cancelled(fut)` | [`shutdown.run_until_triggered(fut)`](Shutdown::run_until_triggered) |
//! | `tracker.spawn(fut)` | `tokio::spawn(shutdown.track(fut))` |
//! | `tracker.token()` | [`shutdown.guard()`](Shutdown::guard) |
//! | `tracker.len()` | [`shutdown.report().remaining`](Shutdown::report) |
//! | `token.run_until_cancelled_owned(fut)`, `token.cancelled_owned()` | the same with a `shutdown.clone()` moved into the future |
//! | `token.drop_guard()` | dropping the last handle of a root coordinator triggers it |
//! | `tracker.is_closed()`, `tracker.is_empty()` | [`shutdown.phase() >= Phase::Triggered`](Shutdown::phase), [`shutdown.report().remaining == 0`](Shutdown::report) |
//! | `tracker.reopen()` | none: a drained coordinator stays drained; make a new [`Shutdown`] |
//! | `tracker.wait().await`, with a timeout around it | [`shutdown.drain_until(sleep(d)).await`](Shutdown::drain_until); at the deadline the tracked futures still running are dropped (forced), where tokio-util's tasks keep running after its timeout |
//!
//! Before, in words: a worker spawned on the tracker loops in
//! `token.run_until_cancelled(..)`, then flushes; `main` cancels the token, closes
//! the tracker and waits for it under a timeout. After:
//!
//! ```
//! # #[tokio::main]
//! # async fn main() {
//! use std::time::Duration;
//! use wind_down::{Phase, Shutdown};
//!
//! let shutdown = Shutdown::new();
//! let worker = shutdown.clone();
//! // was: tracker.spawn(..)
//! tokio::spawn(shutdown.track(async move {
//!     // was: token.run_until_cancelled(..)
//!     worker.run_until_triggered(std::future::pending::<()>()).await;
//!     // The flush: the drain waits for it, but a forced drain drops it (see
//!     // `Shutdown::track` for the form whose data survives a force).
//! }));
//! shutdown.trigger(); // was: token.cancel(); tracker.close();
//! assert!(shutdown.phase() >= Phase::Triggered); // was: token.is_cancelled()
//! // was: timeout(5 s, tracker.wait())
//! let outcome = shutdown.drain_until(tokio::time::sleep(Duration::from_secs(5))).await;
//! assert!(outcome.is_drained());
//! # }
//! ```
//!
//! # From swansong
//!
//! | swansong | wind-down |
//! |---|---|
//! | `Swansong::new()` | [`Shutdown::new()`] |
//! | `swansong.shut_down()` (and awaiting it) | [`shutdown.trigger()`](Shutdown::trigger) (then [`shutdown.drained().await`](Shutdown::drained)) |
//! | `swansong.shutting_down().await` | [`shutdown.triggered().await`](Shutdown::triggered) |
//! | `swansong.guard()` | [`shutdown.guard()`](Shutdown::guard), a `Result` (refused once drained) |
//! | `swansong.interrupt(fut)` | [`shutdown.run_until_triggered(fut)`](Shutdown::run_until_triggered); polled again after it resolved, an [`Until`] panics where an `Interrupt` answers again |
//! | `swansong.child().interrupt(fut)`, the child handle dropped | [`shutdown.child().run_until_triggered(fut)`](Shutdown::run_until_triggered): a dropped child scope is not triggered, so the future runs until the parent's trigger (swansong's ends at once: a dropped child is shut down) |
//! | `swansong.guarded(fut)` | [`shutdown.track(fut)`](Shutdown::track): it lets go of the drain when it completes (a finished `Guarded` holds its guard until dropped) |
//! | `swansong.child()` | [`shutdown.child()`](Shutdown::child) |
//! | `swansong.guard_count()`, `guard_report()` | [`shutdown.report()`](Shutdown::report) |
//! | `swansong.state()`, `is_running()`, `is_complete()` | [`shutdown.phase()`](Shutdown::phase) |
//! | `Swansong::with_guard_report()` | [`Guard::with_label`], and [`shutdown.report()`](Shutdown::report) at any time (or the [`Report`] in [`Outcome::Forced`]) |
//!
//! Before, in words: a child swansong guards a request, an interrupted loop runs
//! beside it, and `shut_down().await` waits for both. After:
//!
//! ```
//! use wind_down::Shutdown;
//!
//! futures_lite::future::block_on(async {
//!     let shutdown = Shutdown::new();
//!     let child = shutdown.child();
//!     let guard = child.guard().expect("not drained"); // was: swansong.guard()
//!     let looping = shutdown.run_until_triggered(std::future::pending::<()>());
//!     let guarded = shutdown.track(async { 1 }); // was: swansong.guarded(..)
//!     assert_eq!(shutdown.report().remaining, 2); // was: swansong.guard_count()
//!     shutdown.trigger(); // was: swansong.shut_down()
//!     assert_eq!(looping.await, None);
//!     assert_eq!(guarded.await, Ok(1));
//!     drop(guard);
//!     shutdown.drained().await; // was: awaiting the ShutdownCompletion
//! });
//! ```
//!
//! # From tokio-graceful
//!
//! | tokio-graceful | wind-down |
//! |---|---|
//! | `Shutdown::default()` (Ctrl-C / SIGTERM) | [`Shutdown::new()`] and [`handle_signals`] with the `tokio` feature's `Signals` (or [`Server::signals`]) |
//! | `Shutdown::new(signal)` | [`Shutdown::new()`], then `signal.await; shutdown.trigger()` |
//! | `shutdown.guard()` | [`shutdown.guard()`](Shutdown::guard) for a count, `shutdown.clone()` for a handle |
//! | `guard.cancelled().await` | [`shutdown.triggered().await`](Shutdown::triggered) |
//! | `shutdown.spawn_task(fut)` | `tokio::spawn(shutdown.track(fut))` |
//! | `shutdown.shutdown_with_limit(d).await` (waits for its signal, then drains) | [`shutdown.triggered().await`](Shutdown::triggered), then [`shutdown.drain_until(sleep(d)).await`](Shutdown::drain_until): `drain_until` alone triggers at once |
//! | `guard.downgrade()` (a weak guard) | a `Shutdown` clone: it does not hold the drain |
//!
//! Before, in words: the default shutdown waits for Ctrl-C or SIGTERM; a task
//! spawned through it waits for `guard.cancelled()`; `main` ends with
//! `shutdown_with_limit(10 s)`. After (the signal replaced by a trigger so the
//! example ends):
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! use std::time::Duration;
//! use wind_down::{Shutdown, handle_signals, tokio::Signals};
//!
//! let shutdown = Shutdown::new();
//! let signals = Signals::new()?; // installed now: an early SIGTERM is not fatal
//! let on_signals = shutdown.clone();
//! tokio::spawn(async move { handle_signals(&on_signals, signals).await });
//! let worker = shutdown.clone();
//! tokio::spawn(shutdown.track(async move {
//!     worker.triggered().await; // was: guard.cancelled().await
//! }));
//! shutdown.trigger(); // the signal, in this example
//! // was: shutdown.shutdown_with_limit(10 s), which first waits for the signal
//! shutdown.triggered().await;
//! let outcome = shutdown.drain_until(tokio::time::sleep(Duration::from_secs(10))).await;
//! assert!(outcome.is_drained());
//! # Ok(()) }
//! # #[cfg(not(feature = "tokio"))]
//! # fn main() {}
//! ```
//!
//! # From axum's `with_graceful_shutdown`
//!
//! | axum | wind-down |
//! |---|---|
//! | `axum::serve(listener, router)` | [`Http::new(Server::new(Tokio::current(), listener)).serve(router)`](crate::hyper::Http::serve) |
//! | `axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())` | the same make-service to [`Http::serve`](crate::hyper::Http::serve): handlers get `ConnectInfo` |
//! | `.with_graceful_shutdown(signal)` | [`.signals(Signals::new()?)`](Server::signals), or [`server.shutdown()`](Server::shutdown)`.trigger()` from the application |
//! | waits for every connection, for ever | drains within the [grace period](Server::grace_period) (25 s by default), then forces; the [`Outcome`] says which |
//!
//! Before, in words: `axum::serve(listener, router).with_graceful_shutdown(ctrl_c)`.
//! After (triggered at once so the example ends):
//!
//! ```
//! # #[cfg(all(feature = "tokio", feature = "hyper"))]
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! use axum::{Router, routing::get};
//! use wind_down::{Server, hyper::Http, tokio::{Signals, Tokio}};
//!
//! let router = Router::new().route("/", get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = Server::new(Tokio::current(), listener).signals(Signals::new()?);
//! server.shutdown().trigger(); // Ctrl-C, in this example
//! let outcome = Http::new(server).serve(router).await?;
//! assert!(outcome.is_drained());
//! # Ok(()) }
//! # #[cfg(not(all(feature = "tokio", feature = "hyper")))]
//! # fn main() {}
//! ```
//!
//! # From tonic's `serve_with_shutdown`
//!
//! | tonic | wind-down (features `grpc`, `tokio`) |
//! |---|---|
//! | `Server::builder().add_service(a).add_service(b)` | `tonic::service::Routes::new(a).add_service(b)`, with [`EndAtTriggerLayer`](crate::grpc::EndAtTriggerLayer) around it (`tower::ServiceBuilder`) |
//! | `.serve_with_shutdown(addr, signal)` | [`Http::new(Server::new(Tokio::current(), listener).signals(Signals::new()?)).serve(routes)`](crate::hyper::Http::serve) |
//! | `.serve_with_incoming_shutdown(incoming, signal)` | a [`Listener`](crate::Listener) of yours (see `examples/custom_runtime.rs`) |
//! | HTTP/2 only (tonic's default without `accept_http1`) | [`Http::http2_only()`](crate::hyper::Http::http2_only); without it, HTTP/1 and HTTP/2 are told apart per connection |
//! | `Server::builder().http2_keepalive_interval(..)`, `max_concurrent_streams(..)` | [`http.http2_mut()`](crate::hyper::Http::http2_mut)`.keep_alive_interval(..)`, `.max_concurrent_streams(..)` |
//! | waits for every connection with no deadline: one open stream (a health `Watch`) holds the process | streams end with UNAVAILABLE at the trigger, unary RPCs finish, what is left is forced at the [grace period](Server::grace_period) and named in the [`Outcome`] |
//! | `health_reporter.set_not_serving::<S>()` for each service, by hand | [`not_serving_at_announcement(shutdown, reporter, ["", "pkg.S"])`](crate::grpc::not_serving_at_announcement): all at the first signal |
//!
//! Before, in words: `Server::builder().add_service(svc).serve_with_shutdown(addr,
//! ctrl_c)`, which never returns while a client keeps a stream open. After
//! (triggered at once so the example ends; `tests/grpc.rs` measures both with a
//! stream open):
//!
//! ```
//! # #[cfg(all(feature = "grpc", feature = "tokio"))]
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! use tower::ServiceBuilder;
//! use wind_down::grpc::{EndAtTriggerLayer, not_serving_at_announcement};
//! use wind_down::{Server, hyper::Http, tokio::{Signals, Tokio}};
//!
//! let (reporter, health) = tonic_health::server::health_reporter();
//! let routes = tonic::service::Routes::new(health); // .add_service(your services)
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = Server::new(Tokio::current(), listener).signals(Signals::new()?);
//! tokio::spawn(not_serving_at_announcement(server.shutdown(), reporter, [""]));
//! server.shutdown().trigger(); // Ctrl-C, in this example
//! let service = ServiceBuilder::new().layer(EndAtTriggerLayer).service(routes);
//! let outcome = Http::new(server).http2_only().serve(service).await?;
//! assert!(outcome.is_drained());
//! # Ok(()) }
//! # #[cfg(not(all(feature = "grpc", feature = "tokio")))]
//! # fn main() {}
//! ```

#[allow(unused_imports)] // for the links above
use crate::{Guard, Outcome, Phase, Refused, Report, Server, Shutdown, Until, handle_signals};
