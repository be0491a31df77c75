//! `config/kyu.env` documents every setting with its default: it must parse, and its
//! values must be the defaults the code uses.

use kyu::config::{Env, Settings};

#[test]
fn the_documented_settings_are_the_defaults() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/kyu.env"))
        .expect("read config/kyu.env");
    let pairs: Vec<(&str, &str)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    for key in kyu::config::KEYS {
        assert!(
            pairs.iter().any(|(k, _)| k == key),
            "{key} is not documented"
        );
    }
    let from_file = Settings::from_env(&Env::from_pairs(pairs)).expect("config/kyu.env parses");
    assert_eq!(from_file, Settings::default());
}
