//! `extract_content` end to end: real `kyu serve` processes fetch saved real-world
//! articles (tests/fixtures/articles) from a loopback origin server, within the fetch
//! limits and behind the SSRF guard; plus handler-level tests (no engine) for what is
//! easier to drive directly, like cancellation.

mod common;
#[path = "extract_content/origin.rs"]
mod origin;

use std::time::Duration;

use common::api::Server;
use kyu::config::FetchSettings;
use kyu::handlers::extract_content::ExtractContent;
use kyu_actors::{Handler, JobContext};
use origin::{Origin, fixture_bytes};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A sentence of each article's body (not in its title or navigation).
const PERRIAULT_SENTENCE: &str =
    "The idea behind code coverage is to record which parts of your code";
const HUKUMUSUME_SENTENCE: &str = "肉をくわえたイヌが、橋を渡っていました。";

fn expected_title(fixture: &str) -> String {
    let meta: Value = serde_json::from_slice(&fixture_bytes(fixture)).unwrap();
    meta["title"].as_str().unwrap().to_owned()
}

/// `kyu serve` that may fetch from `origin` only (KYU_FETCH_ALLOW), plus `env`.
async fn kyu_for(tag: &str, origin: &Origin, env: &[(&str, &str)]) -> Server {
    let mut all = vec![("KYU_FETCH_ALLOW", origin.addr.to_string())];
    all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    Server::start(tag, &all).await
}

async fn run_job(kyu: &Server, url: &str, max_retries: u32, status: &str) -> Value {
    let id = kyu
        .create(
            None,
            json!({"type": "extract_content", "payload": {"url": url}, "max_retries": max_retries}),
        )
        .await;
    kyu.wait_status(&id, None, status).await
}

/// Runs `url` with no retries and returns the job, which must have failed with
/// `kind` in its single attempt.
async fn failed_once(kyu: &Server, url: &str, kind: &str) -> Value {
    let job = run_job(kyu, url, 0, "failed").await;
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(job["error"]["kind"], kind, "{url}: {job}");
    job
}

fn message(job: &Value) -> &str {
    job["error"]["message"].as_str().unwrap_or("")
}

fn text(job: &Value) -> &str {
    job["result"]["text"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn real_articles_are_extracted_in_their_encodings() {
    let origin = Origin::start(None).await;
    let kyu = kyu_for("extract-articles", &origin, &[]).await;

    let url = origin.url("/articles/001");
    let job = run_job(&kyu, &url, 0, "completed").await;
    let r = &job["result"];
    assert_eq!(
        r["title"],
        expected_title("001-perriault.expected-metadata.json")
    );
    assert_eq!(r["byline"], "Nicolas Perriault");
    assert_eq!(r["language"], "en");
    assert_eq!(r["url"], url);
    assert!(text(&job).contains(PERRIAULT_SENTENCE), "{}", text(&job));
    assert!(
        !text(&job).contains("Enjoy my pics"),
        "footer kept: {}",
        text(&job)
    );
    assert_eq!(r["length"], text(&job).chars().count());
    assert_eq!(job["progress"], 100);

    // The same page in UTF-8, in Shift_JIS (declared by <meta>), and in EUC-JP
    // (declared by the header only, the <meta> still saying utf-8).
    let title = expected_title("hukumusume.expected-metadata.json");
    let mut texts = Vec::new();
    for path in [
        "/articles/hukumusume",
        "/articles/hukumusume-sjis",
        "/articles/hukumusume-eucjp",
    ] {
        let job = run_job(&kyu, &origin.url(path), 0, "completed").await;
        assert_eq!(job["result"]["title"], title, "{path}: {job}");
        assert!(
            text(&job).contains(HUKUMUSUME_SENTENCE),
            "{path}: {}",
            text(&job)
        );
        assert!(!text(&job).contains('\u{fffd}'), "{path}: {}", text(&job));
        texts.push(text(&job).to_owned());
    }
    assert!(texts.iter().all(|t| *t == texts[0]), "{texts:#?}");

    // XHTML is taken; a redirect's result names the final URL.
    let job = run_job(&kyu, &origin.url("/articles/xhtml"), 0, "completed").await;
    assert!(text(&job).contains(PERRIAULT_SENTENCE));
    let job = run_job(&kyu, &origin.url("/to-article"), 0, "completed").await;
    assert_eq!(job["result"]["url"], url);
}

/// A saved page served by the origin, and what its extraction must hold.
struct Page {
    /// Served at `/articles/{name}`, from `{name}.html`, described by
    /// `{name}.expected-metadata.json`.
    name: &'static str,
    /// The title wanted when it is not the expected metadata's (see the page).
    title: Option<&'static str>,
    /// The page's `<html lang>`.
    language: &'static str,
    /// A sentence of the article's body.
    sentence: &'static str,
    /// Navigation, sidebar or footer text the page has and the article must not.
    boilerplate: &'static str,
}

const MORE_PAGES: [Page; 3] = [
    // News, English: a Herald Sun (Melbourne) opinion column, mobile site, from 2015.
    Page {
        name: "herald-sun-1",
        // Readability's expected title is the page's <title>, newlines, tabs and
        // "| Herald Sun" included; dom_smoothie prefers the page's og:title, which is
        // the bare headline (also the <h1>).
        title: Some("Angry media won’t buckle over new surveillance laws"),
        language: "en-au",
        sentence: "Without the ability to protect the identity of sources, journalists would be \
                   greatly handicapped in exposing corruption",
        boilerplate: "Forgot your password?",
    },
    // A personal blog post (ebb.org, 2019) beside a long sidebar tag cloud. The
    // site-wide disclaimer under the post is kept, as Readability keeps it too.
    Page {
        name: "ebb-org",
        title: None,
        language: "en-US",
        sentence: "I want the FSF to succeed in its mission and enter a new era of accomplishments.",
        boilerplate: "A Very Old Fork of Jekyll",
    },
    // News in French: Le Monde (2015), with header, menus and a long footer.
    Page {
        name: "lemonde-1",
        title: None,
        language: "fr",
        sentence: "Ce recours juridictionnel est une nouveauté dans le monde du renseignement.",
        boilerplate: "Les rubriques du Monde.fr",
    },
];

#[tokio::test(flavor = "multi_thread")]
async fn more_real_articles_are_extracted() {
    let origin = Origin::start(None).await;
    let kyu = kyu_for("extract-more", &origin, &[]).await;

    // All enqueued first, so the jobs may run side by side; then each awaited.
    let mut ids = Vec::new();
    for page in &MORE_PAGES {
        let url = origin.url(&format!("/articles/{}", page.name));
        let body = json!({"type": "extract_content", "payload": {"url": url}, "max_retries": 0});
        ids.push((page, url, kyu.create(None, body).await));
    }
    for (page, url, id) in ids {
        let job = kyu.wait_status(&id, None, "completed").await;
        let r = &job["result"];
        let name = page.name;
        let title = match page.title {
            Some(t) => t.to_owned(),
            None => expected_title(&format!("{name}.expected-metadata.json")),
        };
        assert_eq!(r["title"], title, "{name}");
        assert_eq!(r["language"], page.language, "{name}");
        assert_eq!(r["url"], url);
        assert!(text(&job).contains(page.sentence), "{name}: {}", text(&job));
        assert!(
            !text(&job).contains(page.boilerplate),
            "{name}: boilerplate kept: {}",
            text(&job)
        );
        assert_eq!(r["length"], text(&job).chars().count(), "{name}");
        assert_eq!(job["progress"], 100, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_and_http_statuses_decide_retries() {
    let origin = Origin::start(None).await;
    let kyu = kyu_for(
        "extract-limits",
        &origin,
        &[
            ("KYU_FETCH_MAX_BYTES", "100000"),
            ("KYU_FETCH_TIMEOUT", "1s"),
        ],
    )
    .await;

    let job = failed_once(&kyu, &origin.url("/pdf"), "non_retryable").await;
    assert!(message(&job).contains("application/pdf"), "{job}");
    for path in ["/big", "/big-stream"] {
        let job = failed_once(&kyu, &origin.url(path), "non_retryable").await;
        assert!(
            message(&job).contains("larger than 100000 bytes"),
            "{path}: {job}"
        );
    }

    // 404: not retried although retries remain.
    let job = run_job(&kyu, &origin.url("/missing"), 3, "failed").await;
    assert_eq!(job["attempts"], 1, "{job}");
    assert_eq!(job["error"]["kind"], "non_retryable");
    assert!(message(&job).contains("404"), "{job}");
    assert_eq!(origin.hits("/missing"), 1);

    // 500: retried, then given up after the retries.
    let job = run_job(&kyu, &origin.url("/broken"), 1, "failed").await;
    assert_eq!(job["attempts"], 2, "{job}");
    let kinds: Vec<&Value> = job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["kind"])
        .collect();
    assert_eq!(kinds, [&json!("retryable"), &json!("retryable")], "{job}");
    assert!(message(&job).contains("500") && message(&job).contains("upstream exploded"));
    assert_eq!(origin.hits("/broken"), 2);

    // A page that never answers runs into KYU_FETCH_TIMEOUT: worth retrying.
    let job = failed_once(&kyu, &origin.url("/slow"), "retryable").await;
    assert!(message(&job).contains("timed out"), "{job}");
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_addresses_are_refused() {
    let other = Origin::start(None).await;
    let origin = Origin::start(Some(other.addr)).await;
    let kyu = kyu_for("extract-ssrf", &origin, &[]).await;

    // At enqueue: not http(s), or not a URL at all.
    for (payload, field) in [
        (json!({"url": "file:///etc/passwd"}), "payload.url"),
        (json!({"url": "gopher://127.0.0.1:70/"}), "payload.url"),
        (json!({"url": "not a url"}), "payload.url"),
        (json!({"url": 42}), "payload.url"),
        (json!({}), "payload.url"),
    ] {
        let a = kyu
            .post(
                "/api/v1/jobs",
                None,
                json!({"type": "extract_content", "payload": payload}),
            )
            .await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{payload}: {}",
            a.body
        );
        assert_eq!(a.code(), "invalid_payload", "{}", a.body);
        assert_eq!(a.field(), field, "{}", a.body);
    }

    // At run time: internal addresses that are not the allowed origin.
    let port = other.addr.port();
    for (url, want) in [
        (
            format!("http://127.0.0.1:{port}/articles/001"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://localhost:{port}/articles/001"),
            "is a loopback address",
        ),
        (
            format!("http://[::1]:{port}/articles/001"),
            "::1 is a loopback address",
        ),
        (
            format!("http://0x7f000001:{port}/"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "127.0.0.1 is a loopback address",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "link-local",
        ),
        ("http://10.0.0.1/".into(), "private"),
        ("http://0.0.0.0/".into(), "unspecified"),
    ] {
        let job = failed_once(&kyu, &url, "non_retryable").await;
        assert!(message(&job).contains(want), "{url}: {job}");
        assert!(message(&job).contains("KYU_FETCH_ALLOW_PRIVATE"), "{job}");
    }

    // By redirect from the allowed origin.
    for (path, want) in [
        ("/to-other", "127.0.0.1 is a loopback address"),
        ("/to-file", "file: URLs are not fetched"),
        ("/to-metadata", "link-local"),
        ("/loop", "more than 5 redirects"),
    ] {
        let job = failed_once(&kyu, &origin.url(path), "non_retryable").await;
        assert!(message(&job).contains(want), "{path}: {job}");
    }
    assert_eq!(other.total_hits(), 0, "a refused address was requested");
    assert_eq!(origin.hits("/loop"), 6);

    // The allowed origin itself still works.
    run_job(&kyu, &origin.url("/articles/001"), 0, "completed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_private_opens_every_internal_address() {
    let origin = Origin::start(None).await;
    let kyu = Server::start(
        "extract-open",
        &[("KYU_FETCH_ALLOW_PRIVATE", "true".to_owned())],
    )
    .await;
    let url = format!("http://localhost:{}/articles/001", origin.addr.port());
    let job = run_job(&kyu, &url, 0, "completed").await;
    assert!(text(&job).contains(PERRIAULT_SENTENCE));
}

fn settings(allow_private: bool) -> FetchSettings {
    FetchSettings {
        allow_private,
        timeout: Duration::from_secs(30),
        ..kyu::config::Settings::default().fetch
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_fetch_in_flight() {
    let origin = Origin::start(None).await;
    let h = ExtractContent::new(&settings(true)).unwrap();
    let cancel = CancellationToken::new();
    let url = origin.url("/slow");
    let fetching = {
        let cancel = cancel.clone();
        tokio::spawn(async move { h.extract(&url, &cancel).await })
    };
    origin.slow_arrived().await;
    cancel.cancel();
    let e = tokio::time::timeout(Duration::from_secs(10), fetching)
        .await
        .expect("the fetch stops once canceled")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "canceled", "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn handler_run_and_extract_agree() {
    let origin = Origin::start(None).await;
    let h = ExtractContent::new(&settings(true)).unwrap();
    let url = origin.url("/articles/hukumusume-sjis");
    let article = h.extract(&url, &CancellationToken::new()).await.unwrap();
    assert_eq!(
        article.title.as_deref(),
        Some(expected_title("hukumusume.expected-metadata.json").as_str())
    );
    assert!(
        article.text.contains(HUKUMUSUME_SENTENCE),
        "{}",
        article.text
    );
    assert_eq!(article.url, url);

    let ctx = JobContext::detached("extract_content", json!({ "url": url }));
    let result = h.run(ctx).await.unwrap();
    assert_eq!(result["text"], article.text);
    assert_eq!(result["length"], article.text.chars().count());

    // Refused by default: the guard is on unless the settings open it.
    let closed = ExtractContent::new(&settings(false)).unwrap();
    let e = closed
        .extract(&url, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "non_retryable", "{e}");
    assert_eq!(origin.hits("/articles/hukumusume-sjis"), 2);
}

#[test]
fn the_shift_jis_fixture_is_the_utf8_page_re_encoded() {
    let utf8 = String::from_utf8(fixture_bytes("hukumusume.html")).unwrap();
    let sjis = fixture_bytes("hukumusume.sjis.html");
    let (decoded, _, bad) = encoding_rs::SHIFT_JIS.decode(&sjis);
    assert!(!bad);
    let declared = utf8.replace(
        "content=\"text/html; charset=utf-8\"",
        "content=\"text/html; charset=Shift_JIS\"",
    );
    assert_eq!(decoded, declared);
}
