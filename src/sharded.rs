//! Per-thread shards for what every replayed request touches: a counter, and a value read on
//! every request but changed rarely. Each thread works on its own cache line, so two cores do not
//! pass one line back and forth on each request. Plain data: no IO, no async.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

/// Shards per value: more threads than this share shards, which stays correct and only costs some
/// contention.
const SHARDS: usize = 8;

/// Keeps its content on a cache line (pair) of its own.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded<T>(T);

/// This thread's shard: threads take shards in turn, the first time they ask.
fn shard() -> usize {
    /// The shard the next new thread takes.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static ID: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
    ID.with(|i| *i)
}

/// A counter many threads add to and few read.
#[derive(Debug, Default)]
pub struct Counter {
    /// One count per shard; the total is their sum.
    shards: [Padded<AtomicU64>; SHARDS],
}

impl Counter {
    /// Adds one.
    pub fn incr(&self) {
        self.shards[shard()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// The total.
    pub fn get(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }

    /// Back to zero.
    pub fn reset(&self) {
        self.shards.iter().for_each(|s| s.0.store(0, Ordering::Relaxed));
    }
}

/// A value every request reads and few change: each thread reads its own copy under its own lock;
/// a change writes every copy in turn.
#[derive(Debug)]
pub struct ReadMostly<T> {
    /// One copy per shard, all equal between changes.
    shards: [Padded<RwLock<T>>; SHARDS],
}

impl<T: Clone> ReadMostly<T> {
    /// Holds `v`.
    pub fn new(v: T) -> ReadMostly<T> {
        ReadMostly { shards: std::array::from_fn(|_| Padded(RwLock::new(v.clone()))) }
    }

    /// This thread's copy (hold it briefly, never across an await).
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.shards[shard()].0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces every copy with `v`.
    pub fn set(&self, v: T) {
        for s in &self.shards {
            *s.0.write().unwrap_or_else(|e| e.into_inner()) = v.clone();
        }
    }
}

/// One value per thread shard, each on its own cache lines: a thread works on its own.
#[derive(Debug, Default)]
pub(crate) struct PerThread<T> {
    /// One value per shard.
    shards: [Padded<T>; SHARDS],
}

impl<T> PerThread<T> {
    /// This thread's value.
    pub(crate) fn mine(&self) -> &T {
        &self.shards[shard()].0
    }

    /// Every shard's value.
    pub(crate) fn all(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|s| &s.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_copies_agree_across_threads() {
        let c = Counter::default();
        let v = ReadMostly::new(1u32);
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        c.incr();
                        assert!(*v.read() >= 1);
                    }
                });
            }
            v.set(2);
        });
        assert_eq!(c.get(), 12_000);
        assert_eq!(*v.read(), 2);
        c.reset();
        assert_eq!(c.get(), 0);
    }
}
