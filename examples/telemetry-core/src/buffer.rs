//! [`WriteBehind`]: accepted events kept in memory until the flusher has stored them
//! (`ACK_MODE=buffered`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::event::Record;

/// The in-memory half of the write-behind store.
///
/// An event is *pending* from [`accept`](Self::accept) until a flush takes it, then
/// *flushing* until the flush has committed ([`flushed`](Self::flushed)); a failed
/// flush leaves it flushing, and the next flush retries it with the new pending ones.
/// [`get`](Self::get) sees both, so an event is readable at every moment from its
/// acceptance on: from here until the commit, from the store after it.
///
/// It holds at most its capacity of events not yet committed (pending and flushing):
/// [`accept`](Self::accept) refuses more ([`Refused::Full`]) instead of acknowledging
/// events it could not keep, so that a database that is slow or locked turns into
/// back-pressure (`503` + `Retry-After`), not into unbounded memory.
///
/// After [`close`](Self::close), `accept` refuses new events, so that nothing is
/// acknowledged that the last flush would not write.
#[derive(Debug)]
pub struct WriteBehind {
    state: Mutex<State>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<String, Record>,
    flushing: HashMap<String, Record>,
    closed: bool,
}

/// What [`WriteBehind::accept`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The event is buffered; it will be written by the next flush.
    New,
    /// An event with this id is already buffered: the first one is kept (the store
    /// does the same with `INSERT OR IGNORE`).
    Duplicate,
}

/// Why an event was not acknowledged: answer `503` + `Retry-After`. Nothing was
/// stored, or nothing the client was told about: it may send the event again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The bound of events not yet committed (`BUFFER_CAPACITY`) is reached: the
    /// database is slow, locked or failing.
    Full,
    /// The transaction holding the event failed (`ACK_MODE=durable`).
    Failed,
    /// The database is being closed by the shutdown.
    Closed,
}

impl Refused {
    /// `full`, `failed` or `closed`: the `reason` label of
    /// [`EVENTS_REFUSED`](crate::metrics::EVENTS_REFUSED).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Failed => "failed",
            Self::Closed => "closed",
        }
    }
}

impl WriteBehind {
    /// An empty, open buffer holding at most `capacity` events not yet committed (at
    /// least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    /// The most events it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent, even if it panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Buffers `record`. Once this returns `Ok`, the event is acknowledged: the
    /// flusher (or the shutdown's last flush) writes it.
    ///
    /// # Errors
    ///
    /// [`Refused::Closed`] once [`close`](Self::close) has been called;
    /// [`Refused::Full`] when it holds its capacity of events (an id already buffered
    /// is still answered [`Accepted::Duplicate`]: it takes no room).
    pub fn accept(&self, record: Record) -> Result<Accepted, Refused> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.pending.contains_key(&record.id) || state.flushing.contains_key(&record.id) {
            return Ok(Accepted::Duplicate);
        }
        if state.pending.len() + state.flushing.len() >= self.capacity {
            return Err(Refused::Full);
        }
        state.pending.insert(record.id.clone(), record);
        Ok(Accepted::New)
    }

    /// The buffered event with `id`: pending or being flushed.
    pub fn get(&self, id: &str) -> Option<Record> {
        let state = self.lock();
        state
            .pending
            .get(id)
            .or_else(|| state.flushing.get(id))
            .cloned()
    }

    /// Events not yet committed to the store.
    pub fn len(&self) -> usize {
        let state = self.lock();
        state.pending.len() + state.flushing.len()
    }

    /// `true` when every accepted event has been committed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a flush: moves the pending events to flushing and returns every event
    /// being flushed (those of a failed flush included). Call [`flushed`](Self::flushed)
    /// once they are committed. Flushes must not overlap.
    pub fn begin_flush(&self) -> Vec<Record> {
        let mut state = self.lock();
        let pending = std::mem::take(&mut state.pending);
        state.flushing.extend(pending);
        state.flushing.values().cloned().collect()
    }

    /// Ends a flush whose events are committed: they are read from the store from now
    /// on.
    pub fn flushed(&self) {
        self.lock().flushing.clear();
    }

    /// Refuses new events from now on. Idempotent.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// `true` once [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::record;

    #[test]
    fn an_event_is_readable_from_acceptance_until_flushed() {
        let buffer = WriteBehind::with_capacity(10);
        assert_eq!(buffer.accept(record("a", 1.0)), Ok(Accepted::New));
        assert_eq!(buffer.get("a"), Some(record("a", 1.0)));

        let batch = buffer.begin_flush();
        assert_eq!(batch, [record("a", 1.0)]);
        assert_eq!(buffer.get("a"), Some(record("a", 1.0)), "while flushing");
        assert_eq!(buffer.len(), 1);

        buffer.flushed();
        assert_eq!(buffer.get("a"), None);
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_repeated_id_keeps_the_first_event_pending_or_flushing() {
        let buffer = WriteBehind::with_capacity(10);
        buffer.accept(record("a", 1.0)).expect("open");
        assert_eq!(buffer.accept(record("a", 2.0)), Ok(Accepted::Duplicate));
        let _ = buffer.begin_flush();
        assert_eq!(buffer.accept(record("a", 3.0)), Ok(Accepted::Duplicate));
        assert_eq!(buffer.get("a"), Some(record("a", 1.0)));
        assert_eq!(buffer.len(), 1);
    }

    #[test]
    fn a_failed_flush_is_retried_with_the_new_events() {
        let buffer = WriteBehind::with_capacity(10);
        buffer.accept(record("a", 1.0)).expect("open");
        let _ = buffer.begin_flush();
        // The flush failed: `flushed` is not called.
        buffer.accept(record("b", 2.0)).expect("open");
        let mut retry = buffer.begin_flush();
        retry.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(retry, [record("a", 1.0), record("b", 2.0)]);
        buffer.flushed();
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_closed_buffer_refuses_new_events() {
        let buffer = WriteBehind::with_capacity(10);
        buffer.accept(record("a", 1.0)).expect("open");
        buffer.close();
        assert!(buffer.is_closed());
        assert_eq!(buffer.accept(record("b", 1.0)), Err(Refused::Closed));
        assert_eq!(buffer.begin_flush(), [record("a", 1.0)], "still flushable");
    }

    #[test]
    fn a_full_buffer_refuses_new_events_until_a_flush_commits() {
        let buffer = WriteBehind::with_capacity(2);
        buffer.accept(record("a", 1.0)).expect("room");
        buffer.accept(record("b", 1.0)).expect("room");
        assert_eq!(buffer.accept(record("c", 1.0)), Err(Refused::Full));
        assert_eq!(
            buffer.accept(record("a", 2.0)),
            Ok(Accepted::Duplicate),
            "a repeated id takes no room"
        );

        let _ = buffer.begin_flush();
        assert_eq!(
            buffer.accept(record("c", 1.0)),
            Err(Refused::Full),
            "events being flushed still count: the flush may fail"
        );
        buffer.flushed();
        assert_eq!(buffer.accept(record("c", 1.0)), Ok(Accepted::New));
        assert_eq!(buffer.len(), 1);
        assert_eq!(WriteBehind::with_capacity(0).capacity(), 1);
    }
}
