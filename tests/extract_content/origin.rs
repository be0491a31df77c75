//! The web the `extract_content` tests fetch from: a loopback axum server serving the
//! saved articles under `tests/fixtures/articles/` and a few misbehaving pages
//! (wrong type, too large, erroring, never answering, redirecting elsewhere). It
//! counts the requests each path gets, so a test can prove a refused URL was never
//! requested.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use tokio::sync::Notify;

/// Largest of the "too large" pages (tests set `KYU_FETCH_MAX_BYTES` below it).
pub const BIG_BYTES: usize = 300_000;

/// A running origin server.
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    hits: Mutex<HashMap<String, usize>>,
    /// Notified when a request for `/slow` arrives.
    slow_arrived: Notify,
    /// Where `/to-other` redirects (another loopback server).
    other: Option<SocketAddr>,
}

impl Origin {
    /// Starts on 127.0.0.1; `/to-other` redirects to `other`.
    pub async fn start(other: Option<SocketAddr>) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Shared {
            hits: Mutex::new(HashMap::new()),
            slow_arrived: Notify::new(),
            other,
        });
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Origin { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests `path` has received.
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Requests received on any path.
    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    /// Resolves once a request for `/slow` has arrived.
    pub async fn slow_arrived(&self) {
        self.state.slow_arrived.notified().await;
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fixture's path.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/articles")
        .join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// The hukumusume page in EUC-JP, still declaring utf-8 in its `<meta>`: only the
/// Content-Type header's charset can decode it right.
pub fn hukumusume_euc_jp() -> Vec<u8> {
    let text = String::from_utf8(fixture_bytes("hukumusume.html")).unwrap();
    let (bytes, _, unmappable) = encoding_rs::EUC_JP.encode(&text);
    assert!(!unmappable, "the page has characters EUC-JP cannot hold");
    bytes.into_owned()
}

fn html(bytes: Vec<u8>, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

async fn serve(State(st): State<Arc<Shared>>, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    *st.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    match path.as_str() {
        "/articles/001" => html(
            fixture_bytes("001-perriault.html"),
            "text/html; charset=utf-8",
        ),
        "/articles/hukumusume" => {
            html(fixture_bytes("hukumusume.html"), "text/html; charset=UTF-8")
        }
        // No charset in the header: the page's own <meta> says Shift_JIS.
        "/articles/hukumusume-sjis" => html(fixture_bytes("hukumusume.sjis.html"), "text/html"),
        "/articles/hukumusume-eucjp" => html(hukumusume_euc_jp(), "text/html; charset=EUC-JP"),
        // More saved pages, all UTF-8 (see the fixtures' README).
        "/articles/herald-sun-1" => html(
            fixture_bytes("herald-sun-1.html"),
            "text/html; charset=utf-8",
        ),
        "/articles/ebb-org" => html(fixture_bytes("ebb-org.html"), "text/html; charset=utf-8"),
        "/articles/lemonde-1" => html(fixture_bytes("lemonde-1.html"), "text/html; charset=utf-8"),
        "/articles/xhtml" => html(fixture_bytes("001-perriault.html"), "application/xhtml+xml"),
        "/pdf" => html(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec(), "application/pdf"),
        "/big" => html(big_page(), "text/html"),
        "/big-stream" => {
            // Chunked, no Content-Length: only the streaming cap can stop it.
            let chunks = big_page()
                .chunks(10_000)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>();
            let mut res = Body::from_stream(futures::stream::iter(chunks)).into_response();
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            res
        }
        "/missing" => (StatusCode::NOT_FOUND, "no such page").into_response(),
        "/broken" => (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response(),
        "/slow" => {
            st.slow_arrived.notify_one();
            std::future::pending::<Response>().await
        }
        "/to-article" => Redirect::to("/articles/001").into_response(),
        "/to-file" => Redirect::to("file:///etc/passwd").into_response(),
        "/to-metadata" => Redirect::to("http://169.254.169.254/latest/meta-data/").into_response(),
        "/to-other" => match st.other {
            Some(o) => Redirect::to(&format!("http://{o}/articles/001")).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        "/loop" => Redirect::to("/loop").into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn big_page() -> Vec<u8> {
    let para = "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>\n";
    let mut page = String::from("<html><body>");
    while page.len() < BIG_BYTES {
        page.push_str(para);
    }
    page.push_str("</body></html>");
    page.into_bytes()
}
