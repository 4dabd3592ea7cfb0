//! Serving HTTP on a loopback port until interrupted: `gantry proxy` and
//! `gantry console` alike.

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use std::future::Future;

/// Binds 127.0.0.1:`port` (0: any free port).
pub async fn listen(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))
}

/// Answers each connection's requests with `handle` until SIGINT or SIGTERM.
pub async fn serve<B, F, Fut>(listener: tokio::net::TcpListener, handle: F) -> anyhow::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let handle = handle.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let answer = handle(request);
                        async move { Ok::<_, std::convert::Infallible>(answer.await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    // A client that never finishes its request's head is dropped.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(std::time::Duration::from_secs(30))
                        .serve_connection(io, service)
                        .await;
                });
            }
        }
    }
    Ok(())
}
