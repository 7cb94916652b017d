//! The hello-world service, the connection builder and the HTTP client shared by
//! measurements 3b, 5 and 6.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

/// `GET` anything -> 200 "hello\n", answered without an await.
#[derive(Clone, Copy, Debug)]
pub struct Hello;

impl hyper::service::Service<Request<Incoming>> for Hello {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn call(&self, _req: Request<Incoming>) -> Self::Future {
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"hello\n")))))
    }
}

/// hyper-util's auto builder with the same settings as wind-down's HTTP layer
/// on tokio (timers, HTTP/1 header read timeout), for the servers without wind-down.
pub fn auto_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(wind_down::hyper::HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// In-memory IO that never has data to read and swallows writes: an idle client.
/// Reads return `Pending` without keeping the waker, so only the coordinator wakes
/// a connection on it.
pub struct NeverIo;

impl Read for NeverIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

impl Write for NeverIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A hyper HTTP/1 server connection on `io` serving [`Hello`].
pub fn idle_http1_conn<I: Read + Write + Unpin + 'static>(io: I) -> http1::Connection<I, Hello> {
    http1::Builder::new().serve_connection(io, Hello)
}

type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// A client HTTP/1 keep-alive connection to `addr`.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    conn: tokio::task::JoinHandle<()>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client { sender, conn })
    }

    /// `GET /`, the whole body read; fails unless the answer is 200 "hello\n".
    pub async fn get(&mut self) -> Result<(), ClientError> {
        self.sender.ready().await?;
        let req = Request::get("/")
            .header(hyper::header::HOST, "127.0.0.1")
            .body(Empty::<Bytes>::new())?;
        let res = self.sender.send_request(req).await?;
        if res.status() != hyper::StatusCode::OK {
            return Err(format!("status {}", res.status()).into());
        }
        let body = res.into_body().collect().await?.to_bytes();
        if &body[..] != b"hello\n" {
            return Err("unexpected body".into());
        }
        Ok(())
    }

    /// Closes the client side and waits (bounded) for the connection task to end.
    pub async fn close(self) {
        drop(self.sender);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn).await;
    }
}
