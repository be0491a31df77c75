//! The offline summary, the chain's last resort (a "simple
//! extraction": the article's first ~300 characters): leading sentences of the text, cut at a
//! sentence boundary (UAX #29, so Japanese "。" counts too), no network. Whitespace is
//! collapsed; between CJK characters it is dropped rather than turned into a space.

use unicode_segmentation::UnicodeSegmentation;

/// The leading sentences of `text`, about `target` characters long: whole sentences
/// while they fit, a little over `target` only to avoid a summary of a few words, and
/// a single sentence far longer than `target` cut at a word boundary with "…".
pub fn summarize(text: &str, target: usize) -> String {
    let target = target.max(1);
    let stretch = target + target / 2;
    let mut out = String::new();
    let mut count = 0;
    for sentence in text.split_sentence_bounds() {
        let sentence = collapse_whitespace(sentence);
        if sentence.is_empty() {
            continue;
        }
        let sep = if out.is_empty() || joins_without_space(&out, &sentence) {
            ""
        } else {
            " "
        };
        let len = sep.len() + sentence.chars().count();
        let fits = count + len <= target || (count < target / 2 && count + len <= stretch);
        if !out.is_empty() && !fits {
            break;
        }
        out.push_str(sep);
        out.push_str(&sentence);
        count += len;
        if count >= target {
            break;
        }
    }
    if count > stretch {
        cut_at_word(&out, target)
    } else {
        out
    }
}

/// `text` cut to at most `target` characters at the last word boundary, plus "…".
fn cut_at_word(text: &str, target: usize) -> String {
    let mut end = 0;
    for (i, word) in text.split_word_bound_indices() {
        if text[..i + word.len()].chars().count() > target {
            break;
        }
        end = i + word.len();
    }
    if end == 0 {
        end = text
            .char_indices()
            .nth(target)
            .map_or(text.len(), |(i, _)| i);
    }
    format!("{}…", text[..end].trim_end())
}

/// Whitespace runs become one space, or nothing between two CJK characters; trimmed.
fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space && !(out.chars().next_back().is_some_and(is_cjk) && is_cjk(c)) {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

fn joins_without_space(before: &str, after: &str) -> bool {
    before.chars().next_back().is_some_and(is_cjk) || after.chars().next().is_some_and(is_cjk)
}

/// Scripts written without spaces between sentences: CJK punctuation, kana, ideographs,
/// full-width forms.
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3000}'..='\u{30FF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{FF00}'..='\u{FFEF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const EN: &str = "Kyu is a durable job engine. It runs jobs in actors and keeps them in \
        a database. Jobs that fail are retried with exponential back-off. Providers that \
        answer too many requests are put in a cool-down. The summarize job falls back to \
        an extractive summary when no provider can answer. This sentence is past the \
        limit and must not appear.";

    #[test]
    fn english_keeps_whole_leading_sentences_near_300_chars() {
        let s = summarize(EN, 300);
        assert!(s.starts_with("Kyu is a durable job engine. It runs jobs"));
        assert!(s.ends_with('.'), "{s}");
        let n = s.chars().count();
        assert!((150..=300).contains(&n), "{n}: {s}");
        assert!(!s.contains("must not appear"));
        assert!(EN.starts_with(&s[..40]));
    }

    #[test]
    fn lengths_scale() {
        let short = summarize(EN, 150);
        let long = summarize(EN, 600);
        assert!(short.chars().count() <= 150 + 75, "{short}");
        assert!(short.chars().count() < summarize(EN, 300).chars().count());
        assert_eq!(long, collapse_whitespace(EN), "the whole text fits in 600");
    }

    #[test]
    fn japanese_cuts_at_the_full_stop_without_spaces() {
        let ja = "吾輩は猫である。名前はまだ無い。\nどこで生れたかとんと見当がつかぬ。\
                  何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。";
        let s = summarize(ja, 35);
        assert_eq!(
            s,
            "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
        );
        assert!(s.ends_with('。'));
    }

    #[test]
    fn one_huge_sentence_is_cut_at_a_word_with_an_ellipsis() {
        let run_on = "word ".repeat(200);
        let s = summarize(&run_on, 100);
        assert!(s.ends_with("word…"), "{s}");
        assert!(s.chars().count() <= 101);
    }

    #[test]
    fn whitespace_is_collapsed_and_empty_text_stays_empty() {
        assert_eq!(summarize("  A  b\n\nc.   D. ", 300), "A b c. D.");
        assert_eq!(summarize(" \n ", 300), "");
        assert_eq!(
            collapse_whitespace("日本\n語 and\tEnglish"),
            "日本語 and English"
        );
    }
}
