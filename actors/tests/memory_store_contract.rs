//! The store contract on the in-memory store the engine tests use.

use std::sync::Arc;

use kyu_actors::testkit::{ManualClock, MemoryStore, TestStore};

async fn memory() -> Option<TestStore> {
    let clock = Arc::new(ManualClock::fixed());
    let store = Arc::new(MemoryStore::new(clock.clone()));
    Some(TestStore {
        store: store.clone(),
        other: store,
        clock,
        guard: Box::new(()),
    })
}

kyu_actors::store_contract_tests!(memory);
kyu_actors::flow_contract_tests!(memory);
