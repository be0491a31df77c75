//! The dispatcher's waiting remote fetches. A fetch that found nothing parks here and
//! holds no connection and runs no query: the dispatcher claims for it again only when
//! something may be claimable (an enqueue, a due delayed job, a rescue, a wake-up from
//! another node), at most one claim in flight per fetch. A fetch whose HTTP request
//! went away is dropped; jobs claimed for it meanwhile are given back, never lost.

use std::collections::HashMap;

use crate::remote::PendingFetch;

pub(super) struct Parked {
    pub fetch: PendingFetch,
    /// A claim for it is in flight.
    pub claiming: bool,
    /// A wake-up came while it was claiming: claim again if that claim is empty.
    pub rewake: bool,
}

#[derive(Default)]
pub(super) struct RemoteFetches {
    next: u64,
    parked: HashMap<u64, Parked>,
}

impl RemoteFetches {
    pub fn insert(&mut self, fetch: PendingFetch) -> u64 {
        self.next += 1;
        self.parked.insert(
            self.next,
            Parked {
                fetch,
                claiming: false,
                rewake: false,
            },
        );
        self.next
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Parked> {
        self.parked.get_mut(&id)
    }

    pub fn take(&mut self, id: u64) -> Option<Parked> {
        self.parked.remove(&id)
    }

    pub fn put_back(&mut self, id: u64, p: Parked) {
        self.parked.insert(id, p);
    }

    /// Drops fetches nobody waits for any more (not those with a claim in flight: its
    /// answer releases what it claimed).
    pub fn prune_closed(&mut self) {
        self.parked
            .retain(|_, p| p.claiming || !p.fetch.reply.is_closed());
    }

    /// The fetches to claim for on a wake-up.
    pub fn ids(&self) -> Vec<u64> {
        self.parked.keys().copied().collect()
    }

    /// Answers every waiting fetch (of `worker`, or all) with no jobs.
    pub fn answer_empty(&mut self, worker: Option<&str>) {
        let ids: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, p)| !p.claiming)
            .filter(|(_, p)| worker.is_none_or(|w| p.fetch.request.worker_id == w))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(p) = self.parked.remove(&id) {
                let _ = p.fetch.reply.send(Ok(Vec::new()));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.parked.len()
    }
}
