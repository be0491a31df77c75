//! What `summarize` asks a provider for, independent of its wire format: the text, how
//! long a summary, and in which language. Both clients build their request from a
//! [`SummaryRequest`], so the instructions are the same whichever provider answers.

use serde::Serialize;

/// Longest source text sent to a provider, in characters: an article longer than this
/// is summarized from its beginning (a fetched page may be megabytes).
pub const MAX_INPUT_CHARS: usize = 48_000;

/// How long a summary the job wants (`payload.length`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SummaryLength {
    Short,
    #[default]
    Medium,
    Long,
}

impl SummaryLength {
    /// `short`, `medium` or `long`; anything else is `None`.
    pub fn parse(s: &str) -> Option<SummaryLength> {
        match s {
            "short" => Some(SummaryLength::Short),
            "medium" => Some(SummaryLength::Medium),
            "long" => Some(SummaryLength::Long),
            _ => None,
        }
    }

    /// Target length of the offline (extractive) summary, in characters (about
    /// the first 300 characters for a medium one).
    pub fn extractive_chars(self) -> usize {
        match self {
            SummaryLength::Short => 150,
            SummaryLength::Medium => 300,
            SummaryLength::Long => 600,
        }
    }

    /// The most tokens a provider may answer with.
    pub fn max_tokens(self) -> u32 {
        match self {
            SummaryLength::Short => 256,
            SummaryLength::Medium => 512,
            SummaryLength::Long => 1024,
        }
    }

    fn instruction(self) -> &'static str {
        match self {
            SummaryLength::Short => "one or two sentences",
            SummaryLength::Medium => "a short paragraph of three to five sentences",
            SummaryLength::Long => "two or three paragraphs",
        }
    }
}

/// One summary to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRequest {
    /// The source, cut to [`MAX_INPUT_CHARS`].
    pub text: String,
    pub length: SummaryLength,
    /// A language tag (`ja`, `en`, `pt-BR`).
    pub language: String,
    /// The language's English name when known (`Japanese`), for the instructions.
    pub language_name: Option<String>,
}

impl SummaryRequest {
    pub fn new(
        text: &str,
        length: SummaryLength,
        language: &str,
        language_name: Option<&str>,
    ) -> SummaryRequest {
        SummaryRequest {
            text: text.chars().take(MAX_INPUT_CHARS).collect(),
            length,
            language: language.to_owned(),
            language_name: language_name.map(str::to_owned),
        }
    }

    /// The system instructions.
    pub fn instructions(&self) -> String {
        let language = match &self.language_name {
            Some(name) => format!("{name} (language tag `{}`)", self.language),
            None => format!("the language with tag `{}`", self.language),
        };
        format!(
            "You summarize articles. Write {} summarizing the article the user sends, in \
             {language}. Answer with the summary only: no title, no preamble, no notes.",
            self.length.instruction()
        )
    }

    /// The user message: the article itself.
    pub fn article(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_parse_and_scale() {
        assert_eq!(SummaryLength::parse("short"), Some(SummaryLength::Short));
        assert_eq!(SummaryLength::parse("Medium"), None);
        assert_eq!(SummaryLength::default().extractive_chars(), 300);
        assert!(SummaryLength::Short.max_tokens() < SummaryLength::Long.max_tokens());
    }

    #[test]
    fn instructions_name_length_and_language() {
        let r = SummaryRequest::new("本文", SummaryLength::Short, "ja", Some("Japanese"));
        let i = r.instructions();
        assert!(i.contains("Japanese") && i.contains("`ja`") && i.contains("one or two"));
        let long = "x".repeat(MAX_INPUT_CHARS + 10);
        let r = SummaryRequest::new(&long, SummaryLength::Long, "pt-BR", None);
        assert_eq!(r.article().chars().count(), MAX_INPUT_CHARS);
        assert!(r.instructions().contains("tag `pt-BR`"));
    }
}
