//! HTML → the article's main text, through dom_smoothie (a port of Mozilla's
//! Readability, the algorithm behind Firefox's Reader View): pages are mostly
//! navigation, ads and comments, and a summary of those is worthless.

use dom_smoothie::{Config, Readability, TextMode};
use kyu_actors::JobError;

/// What was found in a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Readable {
    pub title: Option<String>,
    pub byline: Option<String>,
    /// Paragraphs separated by blank lines, trimmed.
    pub text: String,
    pub excerpt: Option<String>,
    /// The page's declared language (`<html lang>`).
    pub language: Option<String>,
}

/// Extracts the main text of `html`, found at `url` (for relative links). CPU-bound:
/// call it off the async threads. An empty result is `non_retryable`.
pub fn extract(html: &str, url: &str) -> Result<Readable, JobError> {
    let cfg = Config {
        text_mode: TextMode::Formatted,
        ..Config::default()
    };
    let mut r = Readability::new(html, Some(url), Some(cfg))
        .map_err(|e| JobError::non_retryable(format!("the page could not be read: {e}")))?;
    let a = r
        .parse()
        .map_err(|e| JobError::non_retryable(format!("no article text found: {e}")))?;
    let text = tidy(&a.text_content);
    if text.is_empty() {
        return Err(JobError::non_retryable("no article text found in the page"));
    }
    Ok(Readable {
        title: non_empty(a.title.trim()),
        byline: a.byline.as_deref().and_then(|b| non_empty(b.trim())),
        text,
        excerpt: a.excerpt.as_deref().and_then(|e| non_empty(e.trim())),
        language: a.lang.as_deref().and_then(|l| non_empty(l.trim())),
    })
}

/// Trims each line and keeps at most one blank line between paragraphs.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push_str("\n\n");
        } else if !out.is_empty() {
            out.push('\n');
        }
        blank = false;
        out.push_str(line);
    }
    out
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_article_and_its_metadata() {
        let para = "The quick brown fox jumps over the lazy dog, again and again, \
                    because the dog never learns to move out of the way. ";
        let html = format!(
            r#"<html lang="en"><head><title>Fox news</title>
            <meta name="author" content="A. Writer"></head><body>
            <nav><a href="/">Home</a> <a href="/about">About</a></nav>
            <article><h1>Fox news</h1><p>{p}</p><p>{p}</p><p>{p}</p></article>
            <footer>© 2024</footer></body></html>"#,
            p = para.repeat(3)
        );
        let r = extract(&html, "https://example.com/fox").unwrap();
        assert_eq!(r.title.as_deref(), Some("Fox news"));
        assert_eq!(r.byline.as_deref(), Some("A. Writer"));
        assert_eq!(r.language.as_deref(), Some("en"));
        assert!(r.text.contains("The quick brown fox jumps"), "{}", r.text);
        assert!(!r.text.contains("About"), "{}", r.text);
    }

    #[test]
    fn an_empty_page_is_non_retryable() {
        let e = extract("<html><body></body></html>", "https://example.com/").unwrap_err();
        assert_eq!(e.kind().as_str(), "non_retryable");
    }

    #[test]
    fn tidy_keeps_paragraphs() {
        assert_eq!(tidy("  a \n b\n\n\n  \n c  \n\n"), "a\nb\n\nc");
        assert_eq!(tidy("\n\n x"), "x");
    }
}
