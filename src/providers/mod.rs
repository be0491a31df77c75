//! AI provider clients (skeleton; the summarize helper builds them).
