//! sqlx errors as [`StoreError`]s: connection trouble is `Unavailable` (retry later),
//! anything else is `Backend`. The text stays inside kyu; the API shows a code.

use kyu_actors::StoreError;

pub fn from_sqlx(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        // A connection that ends mid-handshake or mid-reply reads as a protocol error.
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
        // PostgreSQL: connection exceptions (08), insufficient resources (53: too many
        // connections), operator intervention (57P: shutdown, recovery, cannot connect now).
        sqlx::Error::Database(ref db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("53") || c.starts_with("57P")) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(ref db)
            if matches!(db.code().as_deref(), Some("5" | "6" | "517" | "261")) =>
        {
            // SQLite BUSY / LOCKED (and their extended codes): the writer lock is taken.
            StoreError::Unavailable(e.to_string())
        }
        // MySQL deadlock victim / serialization failure: the transaction rolled back.
        sqlx::Error::Database(ref db) if db.code().as_deref() == Some("40001") => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

/// `?`-friendly conversion for sqlx results.
pub trait SqlxResultExt<T> {
    fn store_err(self) -> Result<T, StoreError>;
}

impl<T> SqlxResultExt<T> for Result<T, sqlx::Error> {
    fn store_err(self) -> Result<T, StoreError> {
        self.map_err(from_sqlx)
    }
}
