//! sqlx errors as [`StoreError`]s: connection trouble is `Unavailable` (retry later),
//! no space left is `Full` (retry once space returns), anything else is `Backend`. The
//! text stays inside kyu; the API shows a code.

use kyu_actors::StoreError;

/// How an `Unavailable` from a pool wait begins: every connection was busy for the
/// whole acquire timeout. That is load as often as an outage, so the store circuit
/// does not open on it (see [`super::circuit`]).
pub const POOL_BUSY: &str = "pool busy: ";

pub fn from_sqlx(e: sqlx::Error) -> StoreError {
    if is_full(&e) {
        return StoreError::Full(e.to_string());
    }
    match e {
        sqlx::Error::PoolTimedOut => StoreError::Unavailable(format!("{POOL_BUSY}{e}")),
        sqlx::Error::Io(_)
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
        sqlx::Error::Database(ref db) if is_sqlite_busy(db.as_ref()) => {
            StoreError::Unavailable(e.to_string())
        }
        // MySQL deadlock victim / serialization failure: the transaction rolled back.
        sqlx::Error::Database(ref db) if db.code().as_deref() == Some("40001") => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

/// SQLite BUSY / LOCKED (and their extended codes): another connection holds the lock.
pub(crate) fn is_sqlite_busy(db: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(db.code().as_deref(), Some("5" | "6" | "517" | "261"))
}

/// Whether `e` says the disk (or the database's space) is exhausted: SQLite
/// SQLITE_FULL (13; the unix VFS reports ENOSPC as it) and SQLITE_IOERR_SHMSIZE (4874:
/// the `-shm` file could not grow), PostgreSQL `53100 disk_full`, MariaDB/MySQL
/// `1114` (table full) and `1021` (disk full).
fn is_full(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(my.number(), 1114 | 1021);
    }
    matches!(db.code().as_deref(), Some("13" | "4874" | "53100"))
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
