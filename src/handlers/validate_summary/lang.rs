//! Languages for the `language` check: a payload names one the way applications do
//! (ISO 639-1 `ja`, a BCP 47 tag `ja-JP`, or ISO 639-3 `jpn`), whatlang speaks ISO
//! 639-3; this maps between them and wraps detection with its reliability.

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

/// The language a payload names: `ja`, `ja-JP`, `jpn`, any case.
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

/// How a language is shown in a check's detail: `ja (Japanese)`.
pub fn label(lang: Lang) -> String {
    let code = ISO1
        .iter()
        .find(|(_, l)| *l == lang)
        .map_or(lang.code(), |(c, _)| c);
    format!("{code} ({})", lang.eng_name())
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
}
