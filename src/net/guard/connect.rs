//! The last check, on each new connection: its peer's exact IP:port against the
//! policy, before a byte of the request is sent. Resolution only sees a host name
//! (not the port), so an `allow` entry admits its IP there; this layer is what keeps
//! `http://localhost:<another port>/` from reaching a port that was not allowed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::Extensions;
use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use tower::{Layer, Service};

use super::{NetPolicy, Refused};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps reqwest's connector (`ClientBuilder::connector_layer`).
#[derive(Clone)]
pub(super) struct PeerCheckLayer {
    pub(super) policy: Arc<NetPolicy>,
}

impl<S> Layer<S> for PeerCheckLayer {
    type Service = PeerCheck<S>;

    fn layer(&self, inner: S) -> PeerCheck<S> {
        PeerCheck {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The connector, refusing connections whose peer the policy does not allow.
#[derive(Clone)]
pub(super) struct PeerCheck<S> {
    inner: S,
    policy: Arc<NetPolicy>,
}

impl<S, R> Service<R> for PeerCheck<S>
where
    S: Service<R>,
    S::Response: Connection + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let connecting = self.inner.call(req);
        let policy = self.policy.clone();
        Box::pin(async move {
            let conn = connecting.await.map_err(Into::into)?;
            let mut extras = Extensions::new();
            conn.connected().get_extras(&mut extras);
            if let Some(info) = extras.get::<HttpInfo>() {
                policy
                    .judge(info.remote_addr())
                    .map_err(|m| Box::new(Refused(m)) as BoxError)?;
            }
            Ok(conn)
        })
    }
}
