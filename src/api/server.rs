//! The HTTP listener. `axum::serve` has neither a header-read timeout nor a connection
//! cap (tokio-rs/axum#2741), so a few thousand slow clients could hold it; this accept
//! loop gives every connection a permit from a semaphore (more wait in the kernel's
//! backlog) and hyper's header-read timeout, and drains connections on shutdown.
//! HTTP/1.1 only: hyper-util's auto (h1/h2) builder first waits for the client's opening
//! bytes with no timeout, so a client that connects and says nothing would hold its
//! permit for ever; the HTTP/1 header timer starts as soon as the connection does.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// How long open requests get to finish on shutdown.
    pub drain: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish
/// (for up to `drain`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer address, for limits keyed by client address.
        let svc = TowerToHyperService::new(app.clone().map_request(
            move |mut r: hyper::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(ConnectInfo(peer));
                r
            },
        ));
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(opts.drain) => {
            tracing::warn!("stopped waiting for open connections");
        }
    }
}
