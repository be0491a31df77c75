//! A TCP proxy a test can cut: while cut, live connections are closed and new ones are
//! accepted and dropped at once, which is how a database that went away looks to kyu.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Bumped on each cut; connections opened before a cut end when they see it.
    epoch: watch::Sender<u64>,
    next: Arc<AtomicU64>,
}

impl Proxy {
    /// Forwards a local port to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let (epoch, _) = watch::channel(0u64);
        let p = Proxy {
            addr,
            up: up.clone(),
            epoch: epoch.clone(),
            next: Arc::new(AtomicU64::new(0)),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = epoch.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut c, mut s) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut c, &mut s) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        p
    }

    /// The database goes away: open connections close, new ones are refused.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.epoch.send(n);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
