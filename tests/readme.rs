//! The README's quick start, followed literally: the commands of its fenced blocks
//! marked `sh quickstart-server` (started in the background, stopped with SIGTERM) and
//! `sh quickstart` (run in order with bash, each must succeed) run against the built
//! binary in an empty directory. A line `# → TEXT` under a command is its expected
//! output: the parts of TEXT between `…` must appear in the output, in order.
//!
//! The one liberty taken: port 7878 becomes a free port (the same text substitution
//! in every command, plus `KYU_BIND`/`KYU_URL` for the commands that use the default),
//! so the test can run beside a kyu on 7878 and other tests.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{TempDir, kyu_bin};

/// A fenced block of the README: its tag (the info string after `sh`) and its text.
struct Block {
    tag: String,
    text: String,
}

/// The `sh` blocks whose info string has a second word (`sh quickstart`, …).
fn tagged_blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```sh ") else {
            continue;
        };
        let text: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        blocks.push(Block {
            tag: info.trim().to_owned(),
            text: text.join("\n") + "\n",
        });
    }
    blocks
}

/// The expected outputs of a block: the `# → ` lines, split at `…`.
fn expectations(block: &str) -> Vec<Vec<String>> {
    block
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("# → "))
        .map(|e| {
            e.split('…')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// Whether `parts` appear in `out` in order.
fn contains_in_order(out: &str, parts: &[String]) -> bool {
    let mut rest = out;
    for p in parts {
        match rest.find(p.as_str()) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("its address").port()
}

/// `bash -c script` in `dir`, with the built `kyu` first on PATH and the client's
/// `KYU_URL` on `port`.
fn shell(script: &str, dir: &Path, port: u16) -> Command {
    let bin_dir = kyu_bin().parent().expect("bin dir").to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let mut cmd = Command::new("bash");
    cmd.args(["-e", "-o", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("KYU_URL", format!("http://127.0.0.1:{port}"))
        .env("KYU_BIND", format!("127.0.0.1:{port}"))
        .env("KYU_LOG", "info,sqlx=warn")
        .env_remove("KYU_TOKEN")
        .env_remove("KYU_API_TOKENS")
        .env_remove("KYU_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdin(Stdio::null());
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `curl -s -o /dev/null -w %{http_code} url`.
fn http_code(url: &str) -> String {
    Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn the_readme_quick_start_works_as_written() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let port = free_port();
    let blocks: Vec<Block> = tagged_blocks(&readme)
        .into_iter()
        .map(|b| Block {
            text: b.text.replace("7878", &port.to_string()),
            ..b
        })
        .collect();
    let servers: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.tag == "quickstart-server")
        .collect();
    let steps: Vec<&Block> = blocks.iter().filter(|b| b.tag == "quickstart").collect();
    assert_eq!(servers.len(), 1, "one `sh quickstart-server` block");
    assert!(
        steps.len() >= 3,
        "the quick start's `sh quickstart` blocks: create, enqueue --wait, list"
    );
    assert!(
        readme.contains("cargo install --path ."),
        "the README says how to get the kyu binary"
    );

    let dir = TempDir::new("readme");
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let serve = servers[0].text.trim();
    assert!(!serve.contains('\n'), "the server block is one command");
    let mut server = shell(&format!("exec {serve}"), dir.path(), port)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the server block");
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(30);
    while http_code(&format!("http://127.0.0.1:{port}/readyz")) != "200" {
        if let Ok(Some(st)) = server.try_wait() {
            panic!("`{serve}` exited {st}:\n{}", log_text());
        }
        assert!(Instant::now() < deadline, "not ready:\n{}", log_text());
        std::thread::sleep(Duration::from_millis(50));
    }

    for step in &steps {
        let out = shell(&step.text, dir.path(), port)
            .output()
            .expect("run a quick start block");
        assert!(
            out.status.success(),
            "README block failed:\n{}\n{}",
            step.text,
            text(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        for want in expectations(&step.text) {
            assert!(
                contains_in_order(&stdout, &want),
                "README block:\n{}\nexpected {want:?} in its output:\n{}",
                step.text,
                text(&out)
            );
        }
    }

    // What the README says next: the web page answers, and kyu.db is where it said.
    let page = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/")])
        .output()
        .expect("curl the web page");
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.contains("Overview") && page.contains("open mode"),
        "{page}"
    );
    assert!(
        dir.path().join("kyu.db").exists(),
        "kyu.db in the directory"
    );

    // Ctrl-C or SIGTERM stops it gracefully, with no warning or error.
    let term = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(st)) = server.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            panic!("kyu serve did not stop on SIGTERM:\n{}", log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = log_text();
    assert!(status.success(), "kyu serve exited {status}:\n{log}");
    assert!(
        !log.contains(" WARN ") && !log.contains(" ERROR "),
        "a clean run logs no warning or error:\n{log}"
    );
}

#[test]
fn expectations_match_in_order() {
    let want = expectations("x\n# → {\"a\":\"…\",\"b\":1}\n");
    assert_eq!(
        want,
        [vec!["{\"a\":\"".to_owned(), "\",\"b\":1}".to_owned()]]
    );
    assert!(contains_in_order("{\"a\":\"zz\",\"b\":1}", &want[0]));
    assert!(!contains_in_order("{\"b\":1,\"a\":\"zz\"}", &want[0]));
}
