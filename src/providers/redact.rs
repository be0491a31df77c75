//! Keeps API keys out of everything a provider answer can reach: error messages, the
//! summary, logs. A provider may echo the key back (a 401 body quoting the header), so
//! every string built from an answer goes through [`Redactor::clean`].

/// What a key is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Removes one secret from text.
#[derive(Clone)]
pub struct Redactor {
    secret: String,
}

impl Redactor {
    pub fn new(secret: &str) -> Redactor {
        Redactor {
            secret: secret.to_owned(),
        }
    }

    /// `text` with every occurrence of the secret replaced by [`REDACTED`].
    pub fn clean(&self, text: &str) -> String {
        if self.secret.is_empty() {
            return text.to_owned();
        }
        text.replace(&self.secret, REDACTED)
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence() {
        let r = Redactor::new("gsk-123");
        assert_eq!(
            r.clean("bad key gsk-123 (gsk-123)"),
            "bad key [redacted] ([redacted])"
        );
        assert_eq!(Redactor::new("").clean("as is"), "as is");
        assert_eq!(format!("{r:?}"), "Redactor(…)");
    }
}
