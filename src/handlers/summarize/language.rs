//! Languages of `summarize`: checking a requested language tag (`ja`, `en`, `pt-BR`)
//! and detecting the source's language (whatlang, ISO 639-3) as an ISO 639-1 tag,
//! with the English name a provider's instructions use.

use whatlang::Lang;

/// ISO 639-3 (whatlang's codes) to ISO 639-1, for every language whatlang detects.
#[rustfmt::skip]
const ISO_639_3_TO_1: &[(&str, &str)] = &[
    ("afr", "af"), ("aka", "ak"), ("amh", "am"), ("ara", "ar"), ("aze", "az"),
    ("bel", "be"), ("ben", "bn"), ("bul", "bg"), ("cat", "ca"), ("ces", "cs"),
    ("cmn", "zh"), ("cym", "cy"), ("dan", "da"), ("deu", "de"), ("ell", "el"),
    ("eng", "en"), ("epo", "eo"), ("est", "et"), ("fin", "fi"), ("fra", "fr"),
    ("guj", "gu"), ("heb", "he"), ("hin", "hi"), ("hrv", "hr"), ("hun", "hu"),
    ("hye", "hy"), ("ind", "id"), ("ita", "it"), ("jav", "jv"), ("jpn", "ja"),
    ("kan", "kn"), ("kat", "ka"), ("khm", "km"), ("kor", "ko"), ("lat", "la"),
    ("lav", "lv"), ("lit", "lt"), ("mal", "ml"), ("mar", "mr"), ("mkd", "mk"),
    ("mya", "my"), ("nep", "ne"), ("nld", "nl"), ("nob", "nb"), ("ori", "or"),
    ("pan", "pa"), ("pes", "fa"), ("pol", "pl"), ("por", "pt"), ("ron", "ro"),
    ("rus", "ru"), ("sin", "si"), ("slk", "sk"), ("slv", "sl"), ("sna", "sn"),
    ("spa", "es"), ("srp", "sr"), ("swe", "sv"), ("tam", "ta"), ("tel", "te"),
    ("tgl", "tl"), ("tha", "th"), ("tuk", "tk"), ("tur", "tr"), ("ukr", "uk"),
    ("urd", "ur"), ("uzb", "uz"), ("vie", "vi"), ("yid", "yi"), ("zul", "zu"),
];

/// A language tag `payload.language` may hold: a 2–3 letter primary subtag, then
/// optional `-` subtags of 1–8 letters or digits (BCP 47's shape). Normalized to a
/// lower-case primary subtag (`JA` → `ja`, `pt-BR` stays `pt-BR`).
pub fn normalize_tag(tag: &str) -> Option<String> {
    let mut parts = tag.split('-');
    let primary = parts.next()?;
    if !(2..=3).contains(&primary.len()) || !primary.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let mut out = primary.to_ascii_lowercase();
    for sub in parts {
        if sub.is_empty() || sub.len() > 8 || !sub.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        out.push('-');
        out.push_str(sub);
    }
    Some(out)
}

/// The language of `text` as an ISO 639-1 tag, if whatlang can tell.
pub fn detect(text: &str) -> Option<&'static str> {
    let sample: String = text.chars().take(4_000).collect();
    let lang = whatlang::detect_lang(&sample)?;
    ISO_639_3_TO_1
        .iter()
        .find(|(three, _)| *three == lang.code())
        .map(|(_, one)| *one)
}

/// The English name of `tag`'s language (`ja` → `Japanese`), if known.
pub fn english_name(tag: &str) -> Option<&'static str> {
    let primary = tag.split('-').next()?;
    let three = ISO_639_3_TO_1
        .iter()
        .find(|(three, one)| *one == primary || *three == primary)
        .map(|(three, _)| *three)?;
    Lang::from_code(three).map(|l| l.eng_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked_and_normalized() {
        assert_eq!(normalize_tag("ja").as_deref(), Some("ja"));
        assert_eq!(normalize_tag("EN").as_deref(), Some("en"));
        assert_eq!(normalize_tag("pt-BR").as_deref(), Some("pt-BR"));
        assert_eq!(normalize_tag("zh-Hant-TW").as_deref(), Some("zh-Hant-TW"));
        for bad in [
            "",
            "j",
            "japanese",
            "ja_JP",
            "ja-",
            "e1",
            "en-toolongsubtag",
        ] {
            assert_eq!(normalize_tag(bad), None, "{bad}");
        }
    }

    #[test]
    fn detects_japanese_and_english() {
        assert_eq!(
            detect("吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"),
            Some("ja")
        );
        assert_eq!(
            detect("The quick brown fox jumps over the lazy dog and keeps running."),
            Some("en")
        );
    }

    #[test]
    fn every_whatlang_language_has_a_tag_and_a_name() {
        for lang in Lang::all() {
            let tag = ISO_639_3_TO_1.iter().find(|(t, _)| *t == lang.code());
            assert!(tag.is_some(), "{lang:?}");
        }
        assert_eq!(english_name("ja"), Some("Japanese"));
        assert_eq!(english_name("pt-BR"), Some("Portuguese"));
        assert_eq!(english_name("xx"), None);
    }
}
