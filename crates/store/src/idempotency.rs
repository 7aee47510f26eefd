//! Idempotency, owned by the log: which producer ids were appended since
//! when, for a backend whose log has a single writer and keeps the window
//! in memory (`hookrelay-sled`). A shared backend checks its keys where
//! they are shared instead (`hookrelay-jetstream` claims them in a bucket);
//! both answer [`EventLog::append`](crate::EventLog::append) alike.

use crate::{Appended, IdemKey, KeyedSeq};
use hookrelay_core::{Event, Seq};
use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

/// A pass-through hasher: idempotency keys are already uniform hashes.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// A map keyed by idempotency keys, hashed by [`KeyHasher`].
pub type KeyMap<V> = HashMap<IdemKey, V, BuildHasherDefault<KeyHasher>>;

/// The keys appended recently, each with the sequence and time (unix ms)
/// of the event that took it.
#[derive(Default)]
pub struct RecentKeys {
    seen: KeyMap<(Seq, i64)>,
}

/// The part of an append that is new, once [`RecentKeys::admit`] took out
/// the duplicates.
pub struct Admitted {
    /// The events to append, in order.
    pub events: Vec<Event>,
    /// Their keys, by offset among `events`.
    pub keys: Vec<(IdemKey, u32)>,
    /// Number of events to append (`events` may have been moved out).
    len: usize,
    /// Per event of the append asked for: the sequence that already took
    /// its key, or `None` for an event in `events`. Empty when no key was
    /// taken (the usual case: nothing is copied then).
    taken: Vec<Option<Seq>>,
}

impl Admitted {
    /// The answers of the whole append, once `events` were appended from
    /// sequence `first` on.
    pub fn answers(&self, first: Seq) -> Vec<Appended> {
        if self.taken.is_empty() {
            return (first..first + self.len as u64)
                .map(Appended::New)
                .collect();
        }
        let mut next = first;
        self.taken
            .iter()
            .map(|t| match t {
                Some(seq) => Appended::Duplicate(*seq),
                None => {
                    next += 1;
                    Appended::New(next - 1)
                }
            })
            .collect()
    }
}

impl RecentKeys {
    /// A window holding `keys` (as persisted beside the log).
    pub fn from_keys(keys: impl IntoIterator<Item = KeyedSeq>) -> Self {
        let mut w = Self::default();
        for (k, seq, at) in keys {
            w.insert(k, seq, at);
        }
        w
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The sequence that took `key` at or after `since_ms`, if one did.
    pub fn taken(&self, key: IdemKey, since_ms: i64) -> Option<Seq> {
        self.seen
            .get(&key)
            .filter(|(_, at)| *at >= since_ms)
            .map(|(seq, _)| *seq)
    }

    /// `key` was taken by `seq`, appended at `at_ms`.
    pub fn insert(&mut self, key: IdemKey, seq: Seq, at_ms: i64) {
        self.seen.insert(key, (seq, at_ms));
    }

    /// Forgets the keys appended before `before_ms`; returns how many.
    pub fn prune(&mut self, before_ms: i64) -> usize {
        let n = self.seen.len();
        self.seen.retain(|_, (_, at)| *at >= before_ms);
        n - self.seen.len()
    }

    /// Splits an append into its duplicates (keys taken at or after
    /// `since_ms`) and the events to append. `keys` are by offset into
    /// `events`, distinct.
    pub fn admit(&self, events: Vec<Event>, keys: Vec<(IdemKey, u32)>, since_ms: i64) -> Admitted {
        if keys.iter().all(|(k, _)| self.taken(*k, since_ms).is_none()) {
            return Admitted {
                len: events.len(),
                events,
                keys,
                taken: Vec::new(),
            };
        }
        let key_count = keys.len();
        let mut taken = vec![None; events.len()];
        let mut key_of: Vec<Option<IdemKey>> = vec![None; events.len()];
        for (k, offset) in keys {
            if let Some(slot) = key_of.get_mut(offset as usize) {
                *slot = Some(k);
                taken[offset as usize] = self.taken(k, since_ms);
            }
        }
        let mut kept = Vec::with_capacity(events.len());
        let mut kept_keys = Vec::with_capacity(key_count);
        for ((e, t), k) in events.into_iter().zip(&taken).zip(&key_of) {
            if t.is_some() {
                continue;
            }
            if let Some(k) = k {
                kept_keys.push((*k, kept.len() as u32));
            }
            kept.push(e);
        }
        Admitted {
            len: kept.len(),
            events: kept,
            keys: kept_keys,
            taken,
        }
    }

    /// Records the keys of an append admitted by [`RecentKeys::admit`],
    /// appended from `first` on at `at_ms`.
    pub fn record(&mut self, admitted: &Admitted, first: Seq, at_ms: i64) {
        for (k, offset) in &admitted.keys {
            self.insert(*k, first + u64::from(*offset), at_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u32) -> Event {
        Event {
            id: format!("evt_{i}"),
            device_id: "dev".into(),
            event_type: "message.received".into(),
            occurred_at_ms: 1,
            data: "{}".into(),
        }
    }

    #[test]
    fn duplicates_within_the_window_are_taken_out_and_answered_with_their_sequence() {
        let mut w = RecentKeys::from_keys([(7, 100, 1_000)]);
        // Events 0..4; 1 carries key 7 (taken at 1 000), 3 carries key 8.
        let a = w.admit((0..4).map(ev).collect(), vec![(7, 1), (8, 3)], 500);
        assert_eq!(
            a.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["evt_0", "evt_2", "evt_3"]
        );
        assert_eq!(a.keys, vec![(8, 2)], "offsets among the kept events");
        assert_eq!(
            a.answers(200),
            [
                Appended::New(200),
                Appended::Duplicate(100),
                Appended::New(201),
                Appended::New(202)
            ]
        );
        w.record(&a, 200, 2_000);
        assert_eq!(w.taken(8, 0), Some(202));
    }

    #[test]
    fn a_key_past_the_window_is_new_again_and_pruning_forgets_it() {
        let mut w = RecentKeys::from_keys([(7, 100, 1_000), (9, 101, 5_000)]);
        let a = w.admit(vec![ev(0)], vec![(7, 0)], 1_001);
        assert_eq!(a.answers(300), [Appended::New(300)]);
        assert_eq!(w.prune(2_000), 1);
        assert_eq!(w.len(), 1);
        assert_eq!(w.taken(7, 0), None);
        assert_eq!(w.taken(9, 5_000), Some(101));
    }
}
