//! The dispatch window: events past the cursor whose deliveries are not all
//! settled or recorded yet, in sequence order.

use hookrelay_core::{DeliveryKey, Seq};
use std::collections::VecDeque;
use tokio::time::Instant;

pub(crate) struct WindowEvent {
    pub(crate) seq: Seq,
    /// Deliveries of this event with neither a final answer nor a record.
    pub(crate) unsettled: Vec<DeliveryKey>,
    pub(crate) entered: Instant,
}

#[derive(Default)]
pub(crate) struct Window {
    events: VecDeque<WindowEvent>,
}

impl Window {
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn push(&mut self, e: WindowEvent) {
        debug_assert!(self.events.back().is_none_or(|b| b.seq < e.seq));
        self.events.push_back(e);
    }

    /// Marks `key` settled or recorded.
    pub(crate) fn settle(&mut self, key: &DeliveryKey) {
        // Events are in seq order: binary search for the key's event.
        let Ok(i) = self.events.binary_search_by_key(&key.seq, |e| e.seq) else {
            return;
        };
        self.events[i].unsettled.retain(|k| k != key);
    }

    /// Pops the settled prefix; returns the last popped sequence.
    pub(crate) fn pop_settled(&mut self) -> Option<Seq> {
        let mut last = None;
        while self.events.front().is_some_and(|e| e.unsettled.is_empty()) {
            last = self.events.pop_front().map(|e| e.seq);
        }
        last
    }

    /// The oldest event if it has held the window since before `deadline`.
    pub(crate) fn stale_front(&self, deadline: Instant) -> Option<&WindowEvent> {
        self.events.front().filter(|e| e.entered <= deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_core::WebhookId;

    fn key(seq: Seq) -> DeliveryKey {
        DeliveryKey {
            seq,
            generation: 0,
            webhook_id: WebhookId::from("wh_a"),
        }
    }

    #[test]
    fn cursor_moves_only_over_a_settled_prefix() {
        let mut w = Window::default();
        let now = Instant::now();
        for s in 1..=3 {
            w.push(WindowEvent {
                seq: s,
                unsettled: vec![key(s)],
                entered: now,
            });
        }
        w.push(WindowEvent {
            seq: 4,
            unsettled: vec![],
            entered: now,
        });
        w.settle(&key(2));
        assert_eq!(w.pop_settled(), None);
        w.settle(&key(1));
        assert_eq!(w.pop_settled(), Some(2));
        w.settle(&key(3));
        assert_eq!(w.pop_settled(), Some(4));
        assert_eq!(w.len(), 0);
        w.settle(&key(9));
    }
}
