//! tonic's `helloworld.Greeter`, with a graceful shutdown: the service of the
//! `hello-tonic` binary, and its generated client for tests and benchmarks.
//!
//! - `SayHello` answers `Hello <name>!`; a name `slow:<ms>` answers after that many
//!   milliseconds (for drain tests).
//! - `SayHelloStream` sends `Hello <name>! #<n>` every 100 ms until the drain begins,
//!   then ends the stream with `UNAVAILABLE` ([`drain_tonic::end_on_drain`]).

use std::pin::Pin;
use std::time::Duration;

use drain_tonic::DrainStream;
use shutdown_core::Shutdown;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::IntervalStream;
use tonic::{Request, Response, Status};

/// The generated messages, client and server of `proto/helloworld.proto`.
#[allow(missing_docs)]
pub mod pb {
    tonic::include_proto!("helloworld");
}

use pb::greeter_server::{Greeter, GreeterServer};
use pb::{HelloReply, HelloRequest};

/// How often `SayHelloStream` sends a reply.
pub const STREAM_INTERVAL: Duration = Duration::from_millis(100);

/// The `helloworld.Greeter` service.
#[derive(Debug, Clone)]
pub struct MyGreeter {
    shutdown: Shutdown,
}

impl MyGreeter {
    /// The service, whose streams end when the drain of `shutdown` begins.
    pub fn new(shutdown: Shutdown) -> Self {
        Self { shutdown }
    }

    /// The service as tonic's server type, for `Routes::add_service`.
    pub fn into_server(self) -> GreeterServer<Self> {
        GreeterServer::new(self)
    }
}

/// The reply stream of `SayHelloStream`.
pub type ReplyStream = DrainStream<Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send>>>;

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        if let Some(ms) = name.strip_prefix("slow:") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| Status::invalid_argument(format!("{name:?}: expected slow:<ms>")))?;
            tracing::info!(ms, "SayHello is waiting before it answers");
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}!"),
        }))
    }

    type SayHelloStreamStream = ReplyStream;

    async fn say_hello_stream(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<Self::SayHelloStreamStream>, Status> {
        let name = request.into_inner().name;
        let mut n = 0u64;
        let replies = IntervalStream::new(tokio::time::interval(STREAM_INTERVAL)).map(move |_| {
            n += 1;
            Ok(HelloReply {
                message: format!("Hello {name}! #{n}"),
            })
        });
        let replies: Pin<Box<dyn Stream<Item = _> + Send>> = Box::pin(replies);
        Ok(Response::new(drain_tonic::end_on_drain(
            replies,
            &self.shutdown,
        )))
    }
}
