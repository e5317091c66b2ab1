//! [`GroupCommit`]: the writer of `ACK_MODE=durable`, which acknowledges an event only
//! once its transaction has committed.
//!
//! One writer thread owns the writes. A request queues its event and waits; the writer
//! takes every event queued (up to `COMMIT_BATCH`), waits `COMMIT_WINDOW_MS` for more
//! when the batch is not full, commits them in one transaction and answers each. While
//! it commits, the next events queue up: under load a transaction carries as many
//! events as arrived during the previous one, so the cost of a commit (an fsync) is
//! shared, without a timer adding latency to a lone request. A failed commit answers
//! every event of its batch with [`Refused::Failed`]: none of them was stored.
//!
//! The writer is an OS thread of its own rather than a task handing each transaction to
//! `spawn_blocking`: under load it finds the next batch queued when a commit ends, and
//! no thread has to be woken between two transactions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use shutdown_core::CancellationToken;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tracing::{error, info, warn};

use crate::buffer::{Accepted, Refused};
use crate::event::Record;
use crate::metrics as names;
use crate::store::{SharedStore, StoreError};

type Answer = Result<Accepted, Refused>;

enum Message {
    /// An event waiting for its transaction.
    Event(Queued),
    /// Commit what is queued, answer how many events that was, and stop.
    Stop(oneshot::Sender<usize>),
}

struct Queued {
    record: Record,
    answer: oneshot::Sender<Answer>,
    /// Its room in the bound; given back once it is answered.
    room: OwnedSemaphorePermit,
}

/// The queue in front of the durable writer: at most `capacity` events waiting for
/// their transaction.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Message>,
    room: Arc<Semaphore>,
    capacity: usize,
    stopping: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
}

/// How the writer groups events.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grouping {
    /// The most events in one transaction.
    pub(crate) batch: usize,
    /// How long to wait for more events when the batch is not full.
    pub(crate) window: Duration,
}

impl GroupCommit {
    /// Starts the writer thread, and returns the queue and the task that stops it:
    /// spawn the task on the shutdown's tracker. When `stop` is cancelled the task has
    /// the writer commit what is queued, waits for it, and returns; new events are
    /// refused from then on.
    ///
    /// # Errors
    ///
    /// The OS error when the thread cannot be started.
    pub(crate) fn start(
        store: SharedStore,
        capacity: usize,
        grouping: Grouping,
        stop: CancellationToken,
    ) -> std::io::Result<(Self, impl Future<Output = ()> + Send + 'static)> {
        let capacity = capacity.max(1);
        let (queue, messages) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&commits);
        std::thread::Builder::new()
            .name("telemetry-writer".into())
            .spawn(move || writer(&messages, &store, grouping, &counter))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stopper = {
            let (queue, stopping) = (queue.clone(), Arc::clone(&stopping));
            async move {
                stop.cancelled().await;
                // After the drain: no request can queue an event any more, except one
                // cut at the deadline (no one waits for its answer).
                stopping.store(true, Ordering::Release);
                let (done, committed) = oneshot::channel();
                if queue.send(Message::Stop(done)).is_err() {
                    error!("the durable writer had stopped already");
                    return;
                }
                match committed.await {
                    Ok(events) => info!(events, "durable writer stopped"),
                    Err(_) => error!("the durable writer stopped without an answer"),
                }
            }
        };
        let commit = Self {
            queue,
            room: Arc::new(Semaphore::new(capacity)),
            capacity,
            stopping,
            commits,
        };
        Ok((commit, stopper))
    }

    /// Queues `record` and waits until its transaction has committed (`Ok`: it is on
    /// disk) or failed.
    ///
    /// Cancel-safe in the sense that matters here: if the caller stops waiting (the
    /// client went away), the event is still committed or not, and nothing was
    /// acknowledged.
    ///
    /// # Errors
    ///
    /// [`Refused::Full`] at once when `capacity` events are already waiting;
    /// [`Refused::Failed`] when the transaction failed; [`Refused::Closed`] once the
    /// writer is stopping or the database is closed.
    pub(crate) async fn commit(&self, record: Record) -> Answer {
        if self.stopping.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let room = Arc::clone(&self.room)
            .try_acquire_owned()
            .map_err(|_| Refused::Full)?;
        ::metrics::gauge!(names::EVENTS_BUFFERED).increment(1.0);
        let (answer, answered) = oneshot::channel();
        let queued = Queued {
            record,
            answer,
            room,
        };
        if self.queue.send(Message::Event(queued)).is_err() {
            ::metrics::gauge!(names::EVENTS_BUFFERED).decrement(1.0);
            return Err(Refused::Closed);
        }
        // Dropped unanswered: the writer stopped (or panicked) without committing it.
        answered.await.unwrap_or(Err(Refused::Closed))
    }

    /// Events queued or in a transaction under way, not yet answered.
    pub(crate) fn waiting(&self) -> usize {
        self.capacity - self.room.available_permits()
    }

    /// Transactions committed.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// The writer thread: commits batches until told to stop (or until every sender is
/// gone).
fn writer(
    messages: &mpsc::Receiver<Message>,
    store: &SharedStore,
    grouping: Grouping,
    commits: &AtomicU64,
) {
    let batch_max = grouping.batch.max(1);
    let mut stop = None;
    while stop.is_none() {
        let Ok(first) = messages.recv() else {
            return;
        };
        let mut batch = Vec::new();
        match first {
            Message::Event(queued) => batch.push(queued),
            Message::Stop(done) => stop = Some(done),
        }
        gather(messages, &mut batch, batch_max, &mut stop);
        if stop.is_none() && !grouping.window.is_zero() && batch.len() < batch_max {
            let until = Instant::now() + grouping.window;
            while batch.len() < batch_max && stop.is_none() {
                match messages.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok(Message::Event(queued)) => batch.push(queued),
                    Ok(Message::Stop(done)) => stop = Some(done),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
                gather(messages, &mut batch, batch_max, &mut stop);
            }
        }
        if !batch.is_empty() {
            commit(store, batch, commits);
        }
    }
    // Stopping: what is still queued is committed before the database closes.
    let mut committed = 0;
    loop {
        let mut batch = Vec::new();
        gather(messages, &mut batch, batch_max, &mut stop);
        if batch.is_empty() {
            break;
        }
        committed += batch.len();
        commit(store, batch, commits);
    }
    if let Some(done) = stop {
        let _ = done.send(committed);
    }
}

/// Takes the events already queued, up to `max` in `batch`; notes a stop request.
fn gather(
    messages: &mpsc::Receiver<Message>,
    batch: &mut Vec<Queued>,
    max: usize,
    stop: &mut Option<oneshot::Sender<usize>>,
) {
    while batch.len() < max {
        match messages.try_recv() {
            Ok(Message::Event(queued)) => batch.push(queued),
            Ok(Message::Stop(done)) => *stop = Some(done),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
}

/// Commits `batch` in one transaction and answers each of its events.
fn commit(store: &SharedStore, batch: Vec<Queued>, commits: &AtomicU64) {
    let events = batch.len();
    let (records, waiting): (Vec<Record>, Vec<_>) = batch
        .into_iter()
        .map(|queued| (queued.record, (queued.answer, queued.room)))
        .unzip();
    let answers: Vec<Answer> = match store.run_here(|store| store.insert_batch(&records)) {
        Ok(new) => {
            commits.fetch_add(1, Ordering::Relaxed);
            ::metrics::counter!(names::COMMITS).increment(1);
            let stored = new.iter().filter(|new| **new).count();
            ::metrics::counter!(names::EVENTS_STORED).increment(stored as u64);
            new.into_iter()
                .map(|new| {
                    Ok(if new {
                        Accepted::New
                    } else {
                        Accepted::Duplicate
                    })
                })
                .collect()
        }
        Err(error) => {
            ::metrics::counter!(names::FLUSH_FAILURES).increment(1);
            let refused = match error {
                StoreError::Closed => Refused::Closed,
                _ => Refused::Failed,
            };
            warn!(events, error = %error, "commit failed; its events are answered 503");
            vec![Err(refused); events]
        }
    };
    // Room and gauge first: whoever reads its answer finds the event no longer waiting.
    ::metrics::gauge!(names::EVENTS_BUFFERED).decrement(events as f64);
    for ((answer, room), outcome) in waiting.into_iter().zip(answers) {
        drop(room);
        // A waiter that went away was not acknowledged (its event may be stored).
        let _ = answer.send(outcome);
    }
}
