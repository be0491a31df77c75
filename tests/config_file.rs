//! `config/kyu.toml` documents every setting with its default: it must parse, name every
//! key, and its values must be the defaults the code uses.

use kyu::config::{Env, Settings};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/kyu.toml");

#[test]
fn the_documented_settings_are_the_defaults() {
    let text = std::fs::read_to_string(PATH).expect("read config/kyu.toml");
    let table: toml::Table = text.parse().expect("config/kyu.toml is TOML");
    for key in kyu::config::KEYS {
        assert!(
            table.contains_key(&key.to_ascii_lowercase()),
            "{key} is not documented in config/kyu.toml"
        );
    }
    let env = Env::from_pairs([])
        .with_toml(&text, PATH)
        .expect("config/kyu.toml loads");
    assert_eq!(
        Settings::from_env(&env).expect("settings"),
        Settings::default()
    );
}

#[test]
fn the_environment_overrides_the_file() {
    let text = std::fs::read_to_string(PATH).expect("read config/kyu.toml");
    let env = Env::from_pairs([("JOB_QUEUE_WORKER_COUNT", "7")])
        .with_toml(&text, PATH)
        .expect("loads");
    assert_eq!(Settings::from_env(&env).expect("settings").worker_count, 7);
}

#[test]
fn an_unknown_or_bad_key_is_named() {
    let err = Env::from_pairs([])
        .with_toml("worker_cuont = 3", "t.toml")
        .err()
        .expect("unknown key refused");
    assert!(err.to_string().contains("worker_cuont"), "{err}");
    let env = Env::from_pairs([])
        .with_toml("kyu_lease = \"soon\"", "t.toml")
        .expect("loads");
    let err = Settings::from_env(&env).expect_err("bad duration refused");
    assert!(err.to_string().contains("KYU_LEASE"), "{err}");
    // Each flow-control list names itself.
    let env = Env::from_pairs([])
        .with_toml(
            "[[kyu_concurrency_key]]\ntype = \"sync\"\nkey = \"u:{user_id}\"",
            "t.toml",
        )
        .expect("loads");
    let err = Settings::from_env(&env).expect_err("bad template refused");
    assert!(err.to_string().contains("KYU_CONCURRENCY_KEY"), "{err}");
    let env = Env::from_pairs([(
        "KYU_TIER_PRIORITY",
        r#"[{"tier":"pro","type":"t","priority":11}]"#,
    )]);
    let err = Settings::from_env(&env).expect_err("bad priority refused");
    assert!(err.to_string().contains("KYU_TIER_PRIORITY"), "{err}");
}
