//! Language tags and detection for the jobs that deal in text (`summarize`,
//! `validate_summary`): payloads name a language the way applications do (ISO 639-1
//! `ja`, a BCP 47 tag `ja-JP`, or ISO 639-3 `jpn`); whatlang detects and speaks ISO
//! 639-3. One table maps between them.

use whatlang::Lang;

/// ISO 639-1 codes of the languages whatlang detects.
const ISO1: &[(&str, Lang)] = &[
    ("af", Lang::Afr),
    ("ak", Lang::Aka),
    ("am", Lang::Amh),
    ("ar", Lang::Ara),
    ("az", Lang::Aze),
    ("be", Lang::Bel),
    ("bg", Lang::Bul),
    ("bn", Lang::Ben),
    ("ca", Lang::Cat),
    ("cs", Lang::Ces),
    ("cy", Lang::Cym),
    ("da", Lang::Dan),
    ("de", Lang::Deu),
    ("el", Lang::Ell),
    ("en", Lang::Eng),
    ("eo", Lang::Epo),
    ("es", Lang::Spa),
    ("et", Lang::Est),
    ("fa", Lang::Pes),
    ("fi", Lang::Fin),
    ("fr", Lang::Fra),
    ("gu", Lang::Guj),
    ("he", Lang::Heb),
    ("hi", Lang::Hin),
    ("hr", Lang::Hrv),
    ("hu", Lang::Hun),
    ("hy", Lang::Hye),
    ("id", Lang::Ind),
    ("it", Lang::Ita),
    ("ja", Lang::Jpn),
    ("jv", Lang::Jav),
    ("ka", Lang::Kat),
    ("km", Lang::Khm),
    ("kn", Lang::Kan),
    ("ko", Lang::Kor),
    ("la", Lang::Lat),
    ("lt", Lang::Lit),
    ("lv", Lang::Lav),
    ("mk", Lang::Mkd),
    ("ml", Lang::Mal),
    ("mr", Lang::Mar),
    ("my", Lang::Mya),
    ("nb", Lang::Nob),
    ("ne", Lang::Nep),
    ("nl", Lang::Nld),
    ("no", Lang::Nob),
    ("or", Lang::Ori),
    ("pa", Lang::Pan),
    ("pl", Lang::Pol),
    ("pt", Lang::Por),
    ("ro", Lang::Ron),
    ("ru", Lang::Rus),
    ("si", Lang::Sin),
    ("sk", Lang::Slk),
    ("sl", Lang::Slv),
    ("sn", Lang::Sna),
    ("sr", Lang::Srp),
    ("sv", Lang::Swe),
    ("ta", Lang::Tam),
    ("te", Lang::Tel),
    ("th", Lang::Tha),
    ("tk", Lang::Tuk),
    ("tl", Lang::Tgl),
    ("tr", Lang::Tur),
    ("uk", Lang::Ukr),
    ("ur", Lang::Urd),
    ("uz", Lang::Uzb),
    ("vi", Lang::Vie),
    ("yi", Lang::Yid),
    ("zh", Lang::Cmn),
    ("zu", Lang::Zul),
];

/// A language tag a payload may hold: a 2–3 letter primary subtag, then optional `-`
/// subtags of 1–8 letters or digits (BCP 47's shape). Normalized to a lower-case
/// primary subtag (`JA` → `ja`, `pt-BR` stays `pt-BR`).
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

/// The language a tag names: `ja`, `ja-JP`, `ja_JP`, `jpn`, any case.
pub fn parse(tag: &str) -> Option<Lang> {
    let primary = tag
        .trim()
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match primary.len() {
        2 => ISO1.iter().find(|(c, _)| *c == primary).map(|(_, l)| *l),
        3 => Lang::from_code(primary),
        _ => None,
    }
}

/// `lang`'s ISO 639-1 tag (its ISO 639-3 code if it has none).
pub fn tag(lang: Lang) -> &'static str {
    ISO1.iter()
        .find(|(_, l)| *l == lang)
        .map_or(lang.code(), |(c, _)| c)
}

/// The English name of `tag`'s language (`ja` → `Japanese`), if known.
pub fn english_name(tag: &str) -> Option<&'static str> {
    parse(tag).map(|l| l.eng_name())
}

/// How a language is shown in a check's detail: `ja (Japanese)`.
pub fn label(lang: Lang) -> String {
    format!("{} ({})", tag(lang), lang.eng_name())
}

/// What detection said about a text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detected {
    Reliable(Lang),
    /// A guess too weak to judge by (short or mixed text).
    Unreliable {
        guess: Option<Lang>,
        confidence: f64,
    },
}

/// The language of `text`, with whatlang's reliability.
pub fn detect(text: &str) -> Detected {
    match whatlang::detect(text) {
        Some(info) if info.is_reliable() => Detected::Reliable(info.lang()),
        Some(info) => Detected::Unreliable {
            guess: Some(info.lang()),
            confidence: info.confidence(),
        },
        None => Detected::Unreliable {
            guess: None,
            confidence: 0.0,
        },
    }
}

/// The likeliest language of `text`'s first 4,000 characters as an ISO 639-1 tag, if
/// whatlang can tell at all.
pub fn detect_tag(text: &str) -> Option<&'static str> {
    let sample: String = text.chars().take(4_000).collect();
    whatlang::detect_lang(&sample).map(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_in_three_spellings() {
        assert_eq!(parse("ja"), Some(Lang::Jpn));
        assert_eq!(parse("ja-JP"), Some(Lang::Jpn));
        assert_eq!(parse("JPN"), Some(Lang::Jpn));
        assert_eq!(parse("en_US"), Some(Lang::Eng));
        assert_eq!(parse("zh-Hans"), Some(Lang::Cmn));
        assert_eq!(parse("xx"), None);
        assert_eq!(parse("japanese"), None);
        assert_eq!(parse(""), None);
        assert_eq!(label(Lang::Jpn), "ja (Japanese)");
    }

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
            detect_tag("吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"),
            Some("ja")
        );
        assert_eq!(
            detect_tag("The quick brown fox jumps over the lazy dog and keeps running."),
            Some("en")
        );
    }

    #[test]
    fn every_whatlang_language_has_a_tag_and_a_name() {
        for lang in Lang::all() {
            assert!(ISO1.iter().any(|(_, l)| l == lang), "{lang:?}");
        }
        assert_eq!(english_name("ja"), Some("Japanese"));
        assert_eq!(english_name("pt-BR"), Some("Portuguese"));
        assert_eq!(english_name("xx"), None);
    }
}
