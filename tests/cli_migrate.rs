//! `kyu migrate` through the real binary: the README's first command.

mod common;

use std::process::Command;

use common::{TempDir, kyu_bin};

#[test]
fn migrate_creates_the_sqlite_schema_and_is_idempotent() {
    let dir = TempDir::new("migrate");
    let db = dir.path().join("kyu.db");
    let url = format!("sqlite://{}", db.display());
    for _ in 0..2 {
        let out = Command::new(kyu_bin())
            .args(["migrate", "--database-url", &url])
            .output()
            .expect("run kyu migrate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(db.exists());
}

#[test]
fn a_bad_database_url_names_the_setting() {
    let out = Command::new(kyu_bin())
        .args(["migrate", "--database-url", "oracle://nope"])
        .output()
        .expect("run kyu migrate");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("database_url") && err.contains("oracle"),
        "{err}"
    );
}
