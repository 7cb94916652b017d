//! The HTTP layer: hyper 1.x connections (feature `hyper` for HTTP/1 and HTTP/2,
//! or `http1` or `http2` alone; with `tokio` and/or `smol`).
//!
//! - [`Http`]: the layer over a [`Server`](crate::Server), and its one entry,
//!   [`Http::serve`], for a hyper service, a tower service (tonic's `Routes`, an
//!   axum `Router`) or a tower make-service (axum's `ConnectInfo`); TLS
//!   ([`Http::tls`], feature `tls`), a health listener ([`Http::health`]), and
//!   connection errors reported ([`Http::on_connection_error`]).
//! - [`Connection`] and [`EndAtTrigger`]: for handlers, work that outlives its
//!   response and streaming bodies that end at the trigger.
//! - [`GracefulConnection`] for hyper's own HTTP/1 and HTTP/2 connections, for
//!   accept loops of one's own on [`Shutdown::watch`](crate::Shutdown::watch).
//! - [`HyperRuntime`] and [`IntoHyperIo`]: what each runtime adapter supplies.
//!
//! The layer's files: `http.rs` (the options and the entry), `service.rs` (what
//! it serves), `connection.rs` (one connection, as one future), `go_away.rs`
//! (when a connection is asked to close), `protocols.rs` (hyper's builders and
//! the protocol of each connection), `transport.rs` and `tls.rs` (what runs
//! before HTTP), `health.rs`, `report.rs` (connection errors), `request.rs`
//! ([`Connection`]), `body.rs` ([`EndAtTrigger`]), `streams.rs` (HTTP/2 streams
//! in their connection's task), `shared.rs` (what the layer gives every
//! connection), `runtime.rs`.
//!
//! A peer that misbehaves is cut at the server's grace period.

use std::pin::Pin;

use http_body::Body;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
#[cfg(feature = "http1")]
use hyper::server::conn::http1;
#[cfg(feature = "http2")]
use hyper::server::conn::http2;
use hyper::service::HttpService;

mod body;
mod connection;
mod go_away;
#[cfg(feature = "http1")]
mod health;
mod http;
mod protocols;
mod report;
mod request;
pub(crate) mod runtime;
mod service;
mod shared;
mod streams;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;

pub use self::body::EndAtTrigger;
pub use self::go_away::{CLOSE_GRACE, DEFAULT_PRE_REQUEST_GRACE};
pub use self::http::Http;
pub use self::request::Connection;
use self::runtime::BoxError;
pub use self::runtime::{HEADER_READ_TIMEOUT, HyperRuntime, IntoHyperIo};
pub use self::service::{ConnectionService, IntoHttpService, via};
pub use self::streams::StreamExec;
pub use self::transport::{Plain, Transport};
use crate::coordinator::watch::GracefulConnection;

#[cfg(feature = "http1")]
impl<I, S, B> GracefulConnection for http1::Connection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self)
    }
}

#[cfg(feature = "http1")]
impl<I, S, B> GracefulConnection for http1::UpgradeableConnection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self)
    }
}

#[cfg(feature = "http2")]
impl<I, S, E, B> GracefulConnection for http2::Connection<I, S, E>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self)
    }
}
