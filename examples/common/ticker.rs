// The `ticker.Ticker` gRPC service, as tonic's code generator would write it for
// this definition (committed, so that no `protoc` is needed):
//
//     syntax = "proto3";
//     package ticker;
//     service Ticker {
//       rpc Slow(SlowRequest) returns (Reply);         // answers after `millis`
//       rpc Ticks(TicksRequest) returns (stream Tick); // a tick every `every_millis`, for ever
//     }
//     message SlowRequest { uint64 millis = 1; }
//     message Reply { string message = 1; }
//     message TicksRequest { uint64 every_millis = 1; uint64 padding = 2; }
//     message Tick { uint64 n = 1; bytes padding = 2; }
//
// The server dispatches to the handlers in `examples/grpc.rs` (the `Ticker`
// trait); the client is for the tests.

#![allow(dead_code)] // each user takes its half

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct SlowRequest {
    #[prost(uint64, tag = "1")]
    pub millis: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Reply {
    #[prost(string, tag = "1")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TicksRequest {
    #[prost(uint64, tag = "1")]
    pub every_millis: u64,
    #[prost(uint64, tag = "2")]
    pub padding: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Tick {
    #[prost(uint64, tag = "1")]
    pub n: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub padding: Vec<u8>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a handler returns: its response, later.
pub type Handled<T> = BoxFuture<Result<tonic::Response<T>, tonic::Status>>;

/// The stream of ticks a handler returns.
pub type TickStream = Pin<Box<dyn futures_lite::Stream<Item = Result<Tick, tonic::Status>> + Send>>;

/// The service's handlers.
pub trait Ticker: Clone + Send + Sync + 'static {
    fn slow(&self, request: tonic::Request<SlowRequest>) -> Handled<Reply>;

    fn ticks(&self, request: tonic::Request<TicksRequest>) -> Handled<TickStream>;
}

/// The server side: a tower service for tonic's `Routes`.
#[derive(Clone)]
pub struct TickerServer<T>(pub T);

impl<T> tonic::server::NamedService for TickerServer<T> {
    const NAME: &'static str = "ticker.Ticker";
}

struct SlowSvc<T>(T);

impl<T: Ticker> tonic::server::UnaryService<SlowRequest> for SlowSvc<T> {
    type Response = Reply;
    type Future = Handled<Reply>;

    fn call(&mut self, request: tonic::Request<SlowRequest>) -> Self::Future {
        self.0.slow(request)
    }
}

struct TicksSvc<T>(T);

impl<T: Ticker> tonic::server::ServerStreamingService<TicksRequest> for TicksSvc<T> {
    type Response = Tick;
    type ResponseStream = TickStream;
    type Future = Handled<TickStream>;

    fn call(&mut self, request: tonic::Request<TicksRequest>) -> Self::Future {
        self.0.ticks(request)
    }
}

impl<T, B> tower::Service<http::Request<B>> for TickerServer<T>
where
    T: Ticker,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let handlers = self.0.clone();
        match request.uri().path() {
            "/ticker.Ticker/Slow" => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                Ok(grpc.unary(SlowSvc(handlers), request).await)
            }),
            "/ticker.Ticker/Ticks" => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                Ok(grpc.server_streaming(TicksSvc(handlers), request).await)
            }),
            _ => Box::pin(
                async move { Ok(tonic::Status::unimplemented("no such method").into_http()) },
            ),
        }
    }
}

/// The client side, on any tonic channel.
#[derive(Clone)]
pub struct TickerClient<C> {
    inner: tonic::client::Grpc<C>,
}

impl<C> TickerClient<C>
where
    C: tonic::client::GrpcService<tonic::body::Body>,
    C::Error: Into<tonic::codegen::StdError>,
    C::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <C::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    pub fn new(channel: C) -> Self {
        TickerClient {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    pub async fn slow(
        &mut self,
        request: SlowRequest,
    ) -> Result<tonic::Response<Reply>, tonic::Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| tonic::Status::unknown(format!("service not ready: {}", e.into())))?;
        let path = http::uri::PathAndQuery::from_static("/ticker.Ticker/Slow");
        self.inner
            .unary(tonic::Request::new(request), path, ProstCodec::default())
            .await
    }

    pub async fn ticks(
        &mut self,
        request: TicksRequest,
    ) -> Result<tonic::Response<tonic::codec::Streaming<Tick>>, tonic::Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| tonic::Status::unknown(format!("service not ready: {}", e.into())))?;
        let path = http::uri::PathAndQuery::from_static("/ticker.Ticker/Ticks");
        self.inner
            .server_streaming(tonic::Request::new(request), path, ProstCodec::default())
            .await
    }
}
