//! Test kit (feature `testkit`): a manual clock and the store contract suite that
//! every backend runs (River's `riverdrivertest`, Oban's `for engine <- [...]`).

pub mod flow_contract;
pub mod manual_clock;
pub mod memory_store;
pub mod store_contract;
pub mod workflow_contract;

pub use manual_clock::ManualClock;
pub use memory_store::MemoryStore;
pub use store_contract::TestStore;
