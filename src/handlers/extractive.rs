//! The offline summary (skeleton; the summarize helper builds it).
