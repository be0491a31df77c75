//! English and Japanese summaries through every check, and the payload's refusals.

use serde_json::{Value, json};

use super::*;

const EN_SOURCE: &str = "The city council voted on Tuesday to expand the public bicycle \
program to every district by next spring. The program, launched three years ago with \
two hundred bicycles, now records more than ten thousand rides a week. Council members \
said the expansion would cost about four million dollars, paid mostly by a regional \
transport grant. Critics argued that the money should go to bus services instead, \
pointing to crowded routes in the northern suburbs. The mayor said both could be \
improved and promised a separate plan for buses before the end of the year. Bicycle \
stations will be placed near schools, hospitals and train stations first.";

const EN_SUMMARY: &str = "The city council approved expanding the public bicycle \
program to every district by next spring, at a cost of about four million dollars \
paid mostly by a regional grant. Critics wanted the money spent on buses; the mayor \
promised a separate bus plan this year.";

const JA_SOURCE: &str = "市議会は火曜日、公共の自転車シェアリング事業を来年の春までに全ての地区へ\
拡大する案を可決した。事業は三年前に二百台の自転車で始まり、現在は週に一万回以上の利用がある。\
議員らによると、拡大にかかる費用は約四百万ドルで、大部分は地域の交通補助金でまかなわれる。\
一方で、その資金はバスの運行に充てるべきだという批判もあり、北部郊外の路線の混雑が指摘された。\
市長は両方を改善できると述べ、年内にバスに関する別の計画を示すと約束した。\
自転車のステーションはまず学校や病院、駅の近くに設置される。";

const JA_SUMMARY: &str = "市議会は自転車シェアリング事業を来年の春までに全ての地区へ拡大する案を\
可決した。費用は約四百万ドルで、大部分は地域の交通補助金でまかなわれる。市長は年内にバスに\
関する別の計画を示すと約束した。";

fn report(payload: Value) -> Value {
    Input::parse(&payload).unwrap().report()
}

fn check<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {r}"))
}

fn failed(r: &Value) -> Vec<String> {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_good_english_summary_passes_every_check() {
    let r = report(json!({"summary": EN_SUMMARY, "source": EN_SOURCE, "language": "en"}));
    assert_eq!(r["ok"], true, "{r:#}");
    let names: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "not_empty",
            "length",
            "language",
            "overlap",
            "no_repetition"
        ]
    );
    let lang = check(&r, "language")["detail"].as_str().unwrap();
    assert!(lang.contains("en (English)"), "{lang}");
}

#[test]
fn a_good_japanese_summary_passes_every_check() {
    let r = report(json!({"summary": JA_SUMMARY, "source": JA_SOURCE, "language": "ja"}));
    assert_eq!(r["ok"], true, "{r:#}");
    let overlap = check(&r, "overlap")["detail"].as_str().unwrap();
    assert!(overlap.contains("character bigram"), "{overlap}");
    // Without `language`, the source's detected language is expected.
    let r = report(json!({"summary": JA_SUMMARY, "source": JA_SOURCE}));
    assert_eq!(r["ok"], true, "{r:#}");
    let lang = check(&r, "language")["detail"].as_str().unwrap();
    assert!(
        lang.contains("ja (Japanese)") && lang.contains("source"),
        "{lang}"
    );
}

#[test]
fn a_summary_in_the_wrong_language_fails_the_language_check() {
    // An English summary of a Japanese article: its words are not in the source either.
    let r = report(json!({"summary": EN_SUMMARY, "source": JA_SOURCE}));
    assert_eq!(failed(&r), ["language", "overlap"], "{r:#}");
    let r = report(json!({"summary": JA_SUMMARY, "source": JA_SOURCE, "language": "en"}));
    assert_eq!(failed(&r), ["language"], "{r:#}");
    let detail = check(&r, "language")["detail"].as_str().unwrap();
    assert!(detail.contains("ja (Japanese)") && detail.contains("en (English)"));
}

#[test]
fn an_unrelated_summary_fails_overlap() {
    let unrelated = "Quarterly earnings at the chipmaker beat analyst forecasts, lifting \
        its shares sharply as demand for datacenter processors kept growing.";
    let r = report(json!({"summary": unrelated, "source": EN_SOURCE}));
    assert_eq!(failed(&r), ["overlap"], "{r:#}");
    let unrelated_ja = "半導体メーカーの四半期決算は市場予想を上回り、データセンター向け需要の拡大で株価が急伸した。";
    let r = report(json!({"summary": unrelated_ja, "source": JA_SOURCE, "language": "ja"}));
    assert_eq!(failed(&r), ["overlap"], "{r:#}");
}

#[test]
fn length_bounds_and_the_source() {
    let r = report(json!({"summary": "Bikes.", "source": EN_SOURCE}));
    let l = check(&r, "length");
    assert_eq!(l["ok"], false);
    assert!(
        l["detail"].as_str().unwrap().starts_with("too short"),
        "{l}"
    );

    let r = report(json!({"summary": EN_SUMMARY, "source": EN_SOURCE, "max_chars": 100}));
    assert!(
        check(&r, "length")["detail"]
            .as_str()
            .unwrap()
            .starts_with("too long")
    );

    let r = report(json!({"summary": EN_SOURCE, "source": EN_SOURCE}));
    let l = check(&r, "length");
    assert_eq!(l["ok"], false);
    assert!(
        l["detail"]
            .as_str()
            .unwrap()
            .contains("not shorter than the source"),
        "{l}"
    );

    // Japanese counts characters, not bytes.
    let r = report(json!({"summary": JA_SUMMARY, "source": JA_SOURCE, "max_chars": 100}));
    assert_eq!(check(&r, "length")["ok"], true, "{r:#}");
}

#[test]
fn empty_summaries_fail_without_breaking_the_other_checks() {
    let r = report(json!({"summary": "  ", "source": EN_SOURCE}));
    assert_eq!(r["ok"], false);
    assert_eq!(check(&r, "not_empty")["ok"], false);
    assert_eq!(check(&r, "length")["ok"], false);
    // Nothing to detect: the language check is skipped, not failed.
    assert_eq!(check(&r, "language")["ok"], true);
    assert!(
        check(&r, "language")["detail"]
            .as_str()
            .unwrap()
            .starts_with("not checked")
    );
}

#[test]
fn repeated_sentences_and_loops_fail() {
    let twice = format!("{EN_SUMMARY} {EN_SUMMARY}");
    let r = report(json!({"summary": twice, "source": EN_SOURCE}));
    assert_eq!(check(&r, "no_repetition")["ok"], false, "{r:#}");
    assert!(
        check(&r, "no_repetition")["detail"]
            .as_str()
            .unwrap()
            .starts_with("sentence repeated")
    );

    let looping = "The council expanded the bicycle program and the bicycle program and the \
        bicycle program and the bicycle program and the bicycle program to every district";
    let r = report(json!({"summary": looping, "source": EN_SOURCE}));
    let c = check(&r, "no_repetition");
    assert_eq!(c["ok"], false, "{r:#}");
    assert!(c["detail"].as_str().unwrap().contains("repeated"), "{c}");

    let ja_twice = format!("{JA_SUMMARY}{JA_SUMMARY}");
    let r = report(json!({"summary": ja_twice, "source": JA_SOURCE}));
    assert_eq!(check(&r, "no_repetition")["ok"], false, "{r:#}");
    let ja_loop = "市議会は自転車事業の拡大を可決した、自転車事業の拡大を可決した、自転車事業の拡大を可決した、自転車事業の拡大を可決した";
    let r = report(json!({"summary": ja_loop, "source": JA_SOURCE}));
    assert_eq!(check(&r, "no_repetition")["ok"], false, "{r:#}");
}

#[test]
fn short_ambiguous_text_skips_the_language_check() {
    let r = report(
        json!({"summary": "Bicycle program 2025: OK", "source": EN_SOURCE, "language": "en"}),
    );
    let c = check(&r, "language");
    assert_eq!(c["ok"], true, "{c}");
}

#[test]
fn bad_payloads_name_their_field() {
    let field = |p: Value| Input::parse(&p).unwrap_err().field;
    assert_eq!(field(json!({"source": "s"})), "summary");
    assert_eq!(field(json!({"summary": 1, "source": "s"})), "summary");
    assert_eq!(field(json!({"summary": "s"})), "source");
    assert_eq!(field(json!({"summary": "s", "source": ["x"]})), "source");
    assert_eq!(field(json!({"summary": "s", "source": " "})), "source");
    let ok = |extra: Value| {
        let mut p = json!({"summary": "s", "source": "t"});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    };
    assert_eq!(field(ok(json!({"language": "klingon"}))), "language");
    assert_eq!(field(ok(json!({"language": 5}))), "language");
    assert_eq!(field(ok(json!({"min_chars": -1}))), "min_chars");
    assert_eq!(field(ok(json!({"min_chars": 1.5}))), "min_chars");
    assert_eq!(field(ok(json!({"max_chars": "10"}))), "max_chars");
    assert_eq!(field(ok(json!({"max_chars": 0}))), "max_chars");
    assert_eq!(
        field(ok(json!({"min_chars": 50, "max_chars": 10}))),
        "min_chars"
    );
    assert_eq!(field(json!("text")), "");
    assert!(
        Input::parse(&ok(
            json!({"language": "ja-JP", "min_chars": 5, "max_chars": 10})
        ))
        .is_ok()
    );
}

#[tokio::test]
async fn the_handler_completes_with_the_verdict() {
    let ctx = JobContext::detached(
        "validate_summary",
        json!({"summary": "", "source": EN_SOURCE}),
    );
    let v = ValidateSummary.run(ctx).await.unwrap();
    assert_eq!(v["ok"], false);
    let bad = JobContext::detached("validate_summary", json!({"source": EN_SOURCE}));
    let e = ValidateSummary.run(bad).await.unwrap_err();
    assert_eq!(e.kind().as_str(), "non_retryable");
    assert!(ValidateSummary.validate(&json!({"summary": "a"})).is_err());
}

#[test]
fn a_summary_in_another_script_is_not_held_to_the_sources_length() {
    // 260 English characters say less than the 242 Japanese ones they summarize.
    let r = report(json!({"summary": EN_SUMMARY, "source": JA_SOURCE, "language": "en"}));
    let l = check(&r, "length");
    assert_eq!(l["ok"], true, "{l}");
    assert!(
        l["detail"].as_str().unwrap().contains("another script"),
        "{l}"
    );
}
