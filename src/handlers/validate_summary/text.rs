//! Text measures the summary checks share. Languages written without spaces
//! (Japanese, Chinese; Korean's particles too) are compared by character bigrams,
//! others by words, so one set of checks serves both.

use std::collections::HashSet;

use unicode_segmentation::UnicodeSegmentation;

/// Characters as a reader counts them (grapheme clusters: `é` or an emoji is one).
pub fn chars(text: &str) -> usize {
    text.graphemes(true).count()
}

/// Han, kana or Hangul.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3005 | 0x3040..=0x30FF | 0x31F0..=0x31FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xF900..=0xFAFF | 0xFF66..=0xFF9F | 0x1100..=0x11FF | 0x3130..=0x318F
        | 0xAC00..=0xD7AF | 0x20000..=0x2FFFF)
}

/// How a text is cut into units of meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// Space-separated words.
    Words,
    /// Character bigrams (no spaces between words).
    Bigrams,
}

impl Units {
    /// Bigrams when at least a third of `text`'s letters are CJK, else words.
    pub fn for_text(text: &str) -> Units {
        let (mut letters, mut cjk) = (0usize, 0usize);
        for c in text.chars().filter(|c| c.is_alphanumeric()) {
            letters += 1;
            cjk += usize::from(is_cjk(c));
        }
        if letters > 0 && cjk * 3 >= letters {
            Units::Bigrams
        } else {
            Units::Words
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Units::Words => "word",
            Units::Bigrams => "character bigram",
        }
    }

    /// The units that carry content: words of 3+ characters (short ones are mostly
    /// function words; all words if that leaves none), or every bigram.
    pub fn content(self, text: &str) -> HashSet<String> {
        match self {
            Units::Words => {
                let all = words(text);
                let long: HashSet<String> = all
                    .iter()
                    .filter(|w| w.chars().count() >= 3)
                    .cloned()
                    .collect();
                if long.is_empty() {
                    all.into_iter().collect()
                } else {
                    long
                }
            }
            Units::Bigrams => bigrams(text).into_iter().collect(),
        }
    }

    /// Every unit in order, for counting repeats: words, or single characters.
    pub fn sequence(self, text: &str) -> Vec<String> {
        match self {
            Units::Words => words(text),
            Units::Bigrams => text
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .map(String::from)
                .collect(),
        }
    }
}

/// Lower-cased words (UAX #29).
pub fn words(text: &str) -> Vec<String> {
    text.unicode_words().map(str::to_lowercase).collect()
}

/// Lower-cased bigrams of letters and digits; punctuation and spaces break runs.
pub fn bigrams(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if let Some(p) = prev {
                out.push([p, c].iter().collect());
            }
            prev = Some(c);
        } else {
            prev = None;
        }
    }
    out
}

/// Sentences (UAX #29, which knows `。` and `！`), as letters and digits only,
/// lower-cased, so punctuation and spacing do not hide a repeat.
pub fn sentences(text: &str) -> Vec<(String, &str)> {
    text.unicode_sentences()
        .map(|s| {
            let key: String = s
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect();
            (key, s.trim())
        })
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

/// At most `n` characters of `s`, with `…` when cut.
pub fn quote(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_script() {
        assert_eq!(Units::for_text("The quick brown fox."), Units::Words);
        assert_eq!(Units::for_text("日銀は金利を据え置いた。"), Units::Bigrams);
        assert_eq!(Units::for_text("OpenAIがGPTの新版を発表"), Units::Bigrams);
        assert_eq!(
            Units::for_text("한국은행이 금리를 동결했다"),
            Units::Bigrams
        );
        assert_eq!(Units::for_text(""), Units::Words);
    }

    #[test]
    fn bigrams_break_at_punctuation() {
        assert_eq!(bigrams("日本、銀行"), ["日本", "銀行"]);
        assert_eq!(bigrams("AbC"), ["ab", "bc"]);
    }

    #[test]
    fn content_words_skip_short_ones() {
        let c = Units::Words.content("The cat is on a mat");
        assert!(c.contains("the") && c.contains("cat") && !c.contains("is"));
        assert_eq!(Units::Words.content("is on").len(), 2);
    }

    #[test]
    fn sentences_split_in_both_scripts() {
        let s = sentences("今日は晴れ。明日は雨！ Done. Done.");
        let keys: Vec<&str> = s.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["今日は晴れ", "明日は雨", "done", "done"]);
    }

    #[test]
    fn counts_graphemes() {
        assert_eq!(chars("e\u{301}日本"), 3);
        assert_eq!(quote("abcdef", 3), "abc…");
        assert_eq!(quote("abc", 3), "abc");
    }
}
