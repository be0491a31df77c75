//! The five checks of a summary against its source. Each gives a verdict and a detail
//! a person can act on; a check that cannot judge (language detection too unsure)
//! passes and says why, so only real faults fail a summary.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use whatlang::Lang;

use super::text::{self, Units};
use crate::handlers::language::{self as lang, Detected};

/// A summary shorter than this (in characters) says too little, unless `min_chars`
/// says otherwise.
pub const DEFAULT_MIN_CHARS: usize = 20;
/// The default upper bound is the larger of this and half the source.
pub const DEFAULT_MAX_CHARS_FLOOR: usize = 1000;
/// Least share of the summary's content units found in the source.
pub const MIN_OVERLAP: f64 = 0.3;
/// An n-gram seen this many times is a loop, not emphasis.
pub const REPEAT_LIMIT: usize = 3;
/// n-gram length for the repeat check: words, or characters of CJK text.
const WORD_NGRAM: usize = 6;
const CHAR_NGRAM: usize = 12;
/// Sentences shorter than this (letters and digits) may repeat ("Yes.").
const MIN_SENTENCE_KEY: usize = 4;

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok,
            detail: detail.into(),
        }
    }
}

pub fn not_empty(summary: &str) -> Check {
    if summary.trim().is_empty() {
        Check::new("not_empty", false, "the summary is empty")
    } else {
        Check::new(
            "not_empty",
            true,
            format!("{} characters", text::chars(summary.trim())),
        )
    }
}

/// Within `[min, max]` characters (defaults: 20 and max(1000, half the source)) and
/// shorter than the source when both are in the same kind of script.
pub fn length(summary: &str, source: &str, min: Option<usize>, max: Option<usize>) -> Check {
    let n = text::chars(summary.trim());
    let src = text::chars(source.trim());
    let max = max.unwrap_or_else(|| DEFAULT_MAX_CHARS_FLOOR.max(src / 2));
    let min = min.unwrap_or_else(|| DEFAULT_MIN_CHARS.min(max));
    // Japanese says in 100 characters what English says in 250: a summary in another
    // script is not held to the source's length.
    let comparable = Units::for_text(summary) == Units::for_text(source);
    let bounds = if comparable {
        format!("{min}–{max}, and fewer than the source's {src}")
    } else {
        format!("{min}–{max}; the source, in another script, has {src}")
    };
    let problem = if n < min {
        Some("too short")
    } else if n > max {
        Some("too long")
    } else if comparable && n >= src {
        Some("not shorter than the source")
    } else {
        None
    };
    match problem {
        Some(p) => Check::new(
            "length",
            false,
            format!("{p}: {n} characters (expected {bounds})"),
        ),
        None => Check::new(
            "length",
            true,
            format!("{n} characters (expected {bounds})"),
        ),
    }
}

/// The summary is in `expected`, or else in the source's language.
pub fn language(summary: &str, source: &str, expected: Option<Lang>) -> Check {
    let name = "language";
    let (want, whose) = match expected {
        Some(l) => (l, "expected"),
        None => match lang::detect(source) {
            Detected::Reliable(l) => (l, "the source's language"),
            Detected::Unreliable { .. } => {
                return Check::new(
                    name,
                    true,
                    "not checked: the source's language could not be detected reliably",
                );
            }
        },
    };
    match lang::detect(summary) {
        Detected::Reliable(got) if got == want => Check::new(
            name,
            true,
            format!("the summary is in {}, {whose}", lang::label(got)),
        ),
        Detected::Reliable(got) => Check::new(
            name,
            false,
            format!(
                "the summary is in {}, but {whose} is {}",
                lang::label(got),
                lang::label(want)
            ),
        ),
        Detected::Unreliable { guess, confidence } => Check::new(
            name,
            true,
            format!(
                "not checked: the summary's language could not be detected reliably ({}confidence {confidence:.2})",
                guess.map_or(String::new(), |g| format!("maybe {}, ", lang::label(g)))
            ),
        ),
    }
}

/// Enough of the summary's content comes from the source: the share of its distinct
/// content units (words, or character bigrams for CJK) that the source contains.
pub fn overlap(summary: &str, source: &str) -> Check {
    let units = Units::for_text(summary);
    let mine = units.content(summary);
    if mine.is_empty() {
        return Check::new("overlap", false, "the summary has no words to compare");
    }
    // All of the source's units, not only its content words: a word the summary
    // keeps may be a short one in the source's eyes, too.
    let theirs: HashSet<String> = match units {
        Units::Words => text::words(source).into_iter().collect(),
        Units::Bigrams => text::bigrams(source).into_iter().collect(),
    };
    let shared = mine.iter().filter(|u| theirs.contains(*u)).count();
    let ratio = shared as f64 / mine.len() as f64;
    Check::new(
        "overlap",
        ratio >= MIN_OVERLAP,
        format!(
            "{ratio:.2} of the summary's {} distinct {}s appear in the source (at least {MIN_OVERLAP:.2} needed)",
            mine.len(),
            units.name()
        ),
    )
}

/// No sentence twice, no n-gram [`REPEAT_LIMIT`] times (a generation loop).
pub fn no_repetition(summary: &str) -> Check {
    let name = "no_repetition";
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (key, sentence) in text::sentences(summary) {
        if key.chars().count() < MIN_SENTENCE_KEY {
            continue;
        }
        let n = seen.entry(key).or_default();
        *n += 1;
        if *n == 2 {
            return Check::new(
                name,
                false,
                format!("sentence repeated: \"{}\"", text::quote(sentence, 60)),
            );
        }
    }
    let units = Units::for_text(summary);
    let (n, sep) = match units {
        Units::Words => (WORD_NGRAM, " "),
        Units::Bigrams => (CHAR_NGRAM, ""),
    };
    let seq = units.sequence(summary);
    let mut counts: HashMap<&[String], usize> = HashMap::new();
    for w in seq.windows(n) {
        *counts.entry(w).or_default() += 1;
    }
    // The most repeated; on ties the alphabetically first (a stable detail).
    let worst = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)));
    match worst {
        Some((gram, c)) if c >= REPEAT_LIMIT => Check::new(
            name,
            false,
            format!(
                "\"{}\" repeated {c} times",
                text::quote(&gram.join(sep), 60)
            ),
        ),
        _ => Check::new(name, true, "no repeated sentences or phrases"),
    }
}
