//! Evidence for the crash tests: a ledger of handler runs kept outside kyu's
//! transactions, so a `kill -9` cannot roll it back.

pub mod handler;
pub mod ledger;
