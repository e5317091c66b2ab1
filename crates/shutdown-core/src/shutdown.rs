//! [`Shutdown`]: the handle that every part of a service shares.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OnceCell, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::cleanup::{CleanupOutcome, CleanupTask, IntoCleanup, panic_message};
use crate::config::ShutdownConfig;
use crate::drain_signal::DrainSignal;
use crate::gate::RejectionPolicy;
use crate::in_flight::{RequestGuard, TrackerOwner};
use crate::observer::ShutdownObserver;
use crate::phase::{Phase, Trigger};
use crate::report::{DrainSummary, ShutdownReport, millis};

/// How often the drain logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The shutdown handle: a cheap [`Clone`] (one reference count) shared by the server,
/// the request middleware, background tasks and the code that owns `main`.
///
/// It holds the phase, the in-flight count, the cancellation tokens, the background
/// task tracker and the cleanup registry. Nothing is global: create one per service
/// (tests create one per test).
///
/// # The sequence
///
/// [`run`](Self::run) waits for a [`Trigger`] and then:
///
/// 1. readiness is already false from the moment of the trigger ([`is_ready`](Self::is_ready));
/// 2. waits the pre-stop delay, still serving (after a [`Trigger::Handoff`], the
///    handoff grace instead: open keep-alive connections get time for their next
///    request, answered with `Connection: close`);
/// 3. begins the drain: [`try_enter`](Self::try_enter) returns `None` from now on;
/// 4. waits until no request is in flight or the drain deadline passes, logging progress
///    about once a second; at the deadline it cancels [`request_token`](Self::request_token)
///    and counts the requests left as interrupted;
/// 5. cancels [`token`](Self::token) and waits, bounded, for the tasks spawned with
///    [`spawn`](Self::spawn);
/// 6. runs the cleanup tasks in reverse order of registration, each under its timeout;
/// 7. logs and returns the [`ShutdownReport`].
///
/// Servers that must be told to stop between the drain and the cleanup (every HTTP
/// server) call [`drain`](Self::drain) for steps 1–4, stop the server, then call
/// [`run`](Self::run) for the rest.
///
/// ```
/// use std::time::Duration;
/// use shutdown_core::{Shutdown, ShutdownConfig, Trigger};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shutdown = Shutdown::new(ShutdownConfig::new().with_drain_timeout(Duration::from_secs(5)));
///
/// // A request handler.
/// let handler = {
///     let shutdown = shutdown.clone();
///     tokio::spawn(async move {
///         let Some(_guard) = shutdown.try_enter() else {
///             return "503 Service Unavailable";
///         };
///         tokio::time::sleep(Duration::from_millis(50)).await;
///         "200 OK"
///     })
/// };
/// tokio::task::yield_now().await;
///
/// // Closed last: registered first.
/// shutdown.register_cleanup("database", || async { Ok::<(), std::io::Error>(()) });
/// shutdown.register_cleanup("flush buffer", || println!("flushed"));
///
/// shutdown.request_shutdown("deploy");
/// assert!(!shutdown.is_ready());
/// let report = shutdown.run().await;
///
/// assert_eq!(handler.await.unwrap(), "200 OK");
/// assert_eq!(report.drain.drained(), 1);
/// assert_eq!(report.cleanups[0].name, "flush buffer");
/// assert_eq!(report.exit_code(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    in_flight: TrackerOwner,
    config: ShutdownConfig,
    trigger: OnceLock<(Trigger, Instant)>,
    triggered: CancellationToken,
    phase: AtomicU8,
    phase_tx: watch::Sender<Phase>,
    /// Wakes the [`DrainSignal`]s when the drain begins.
    drain_started: Arc<Notify>,
    /// Long-lived responses ended by the drain signal.
    streams_closed: AtomicU64,
    /// What [`Shutdown::admit_upgrade`] rejects with: the configuration's `Retry-After`.
    upgrade_rejection: RejectionPolicy,
    root: CancellationToken,
    requests: CancellationToken,
    tasks: TaskTracker,
    cleanups: Mutex<Vec<CleanupTask>>,
    /// When the drain began, and the requests in flight then: recorded once, so that
    /// a drain dropped and called again keeps its deadline.
    drain_began: OnceLock<(Instant, usize)>,
    drain: OnceCell<DrainSummary>,
    report: OnceCell<ShutdownReport>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new(ShutdownConfig::default())
    }
}

impl Shutdown {
    /// A new handle in [`Phase::Running`].
    pub fn new(config: ShutdownConfig) -> Self {
        let root = CancellationToken::new();
        let requests = root.child_token();
        let upgrade_rejection = RejectionPolicy::new(config.retry_after_secs(), 0);
        Self {
            inner: Arc::new(Inner {
                in_flight: TrackerOwner::new(),
                config,
                trigger: OnceLock::new(),
                triggered: CancellationToken::new(),
                phase: AtomicU8::new(Phase::Running as u8),
                phase_tx: watch::Sender::new(Phase::Running),
                drain_started: Arc::new(Notify::new()),
                streams_closed: AtomicU64::new(0),
                upgrade_rejection,
                root,
                requests,
                tasks: TaskTracker::new(),
                cleanups: Mutex::new(Vec::new()),
                drain_began: OnceLock::new(),
                drain: OnceCell::new(),
                report: OnceCell::new(),
            }),
        }
    }

    /// Sets the observer that receives every event of this handle (see
    /// [`ShutdownObserver`]), for example `drain_metrics::DrainMetrics`. Set it before
    /// serving: a request admitted earlier would be reported as finished but never as
    /// started. Only one observer can be set; a second one is ignored, with a warning.
    pub fn with_observer(self, observer: impl ShutdownObserver) -> Self {
        if !self.inner.in_flight.set_observer(Box::new(observer)) {
            warn!("a shutdown observer is already set; the new one is ignored");
        }
        self
    }

    fn observer(&self) -> Option<&dyn ShutdownObserver> {
        self.inner.in_flight.observer()
    }

    /// The configuration this handle was built with.
    pub fn config(&self) -> &ShutdownConfig {
        &self.inner.config
    }

    // ----- requests -------------------------------------------------------------------

    /// Counts a request in: `Some(guard)` while serving, `None` once the drain has
    /// begun (answer `503` with [`ShutdownConfig::retry_after`]).
    ///
    /// Race-free: no request is admitted after the drain has observed zero in flight.
    /// No lock and no allocation: one compare-exchange to enter, one when the guard
    /// drops, and no reference count (the guard may still outlive every handle). Each
    /// `None` is counted in [`rejected`](Self::rejected), except during a handoff, when
    /// the [`RequestGate`](crate::RequestGate) serves the request all the same.
    ///
    /// ```
    /// use shutdown_core::Shutdown;
    ///
    /// let shutdown = Shutdown::default();
    /// let guard = shutdown.try_enter().expect("running");
    /// assert_eq!(shutdown.in_flight(), 1);
    /// drop(shutdown);
    /// // A streaming body may hold its guard after the server has let go of the handle.
    /// std::thread::spawn(move || drop(guard)).join().unwrap();
    /// ```
    #[inline]
    pub fn try_enter(&self) -> Option<RequestGuard> {
        self.inner.in_flight.try_enter()
    }

    /// Requests in flight now. Lock-free; for observers and health endpoints.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.in_flight()
    }

    /// Requests turned away since the drain began.
    pub fn rejected(&self) -> u64 {
        self.inner.in_flight.rejected()
    }

    // ----- phases and trigger ---------------------------------------------------------

    /// `true` until the shutdown is triggered: what `/health/ready` reports. It turns
    /// false before the pre-stop delay, so load balancers stop sending traffic while
    /// requests are still served.
    pub fn is_ready(&self) -> bool {
        self.inner.trigger.get().is_none()
    }

    /// `true` once the drain has begun: new requests are turned away.
    pub fn is_draining(&self) -> bool {
        self.inner.in_flight.is_draining()
    }

    /// `true` once the shutdown has been triggered by a handoff
    /// ([`Trigger::Handoff`]): a successor serves new connections, and this process
    /// only finishes what it has (see [`drain`](Self::drain)).
    pub fn is_handing_off(&self) -> bool {
        matches!(self.trigger_reason(), Some(Trigger::Handoff { .. }))
    }

    /// Resolves at a handoff's trigger, when a server must stop accepting at once (the
    /// successor accepts); never resolves for any other trigger, after which the
    /// listener stays open until the drain has ended. Cancel-safe.
    pub async fn handed_over(&self) {
        self.triggered().await;
        if !self.is_handing_off() {
            std::future::pending::<()>().await;
        }
    }

    /// The current phase, read from an atomic (no lock).
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.inner.phase.load(Ordering::Acquire))
    }

    /// A receiver of the current phase. Like every `watch` receiver it sees the latest
    /// value: an observer that is slow to look may skip a phase that was brief.
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.inner.phase_tx.subscribe()
    }

    /// Resolves once the phase is `phase` or later. Cancel-safe.
    pub async fn reached(&self, phase: Phase) {
        let mut phases = self.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we wait.
        let _ = phases.wait_for(|current| *current >= phase).await;
    }

    /// Starts the shutdown. Returns `true` for the first trigger, which is recorded as
    /// the reason; later triggers change nothing and return `false`. Safe to call from
    /// any thread, inside or outside the runtime.
    pub fn trigger(&self, trigger: Trigger) -> bool {
        let mut first = false;
        self.inner.trigger.get_or_init(|| {
            first = true;
            (trigger.clone(), Instant::now())
        });
        if first {
            info!(
                trigger = %trigger,
                trigger_kind = trigger.kind(),
                in_flight = self.in_flight(),
                "shutting down"
            );
            self.inner
                .in_flight
                .begin_shutdown(matches!(trigger, Trigger::Handoff { .. }));
            self.inner.triggered.cancel();
        } else {
            debug!(trigger = %trigger, "already shutting down; trigger ignored");
        }
        first
    }

    /// Starts the shutdown from the application, with a reason for the report.
    /// Shorthand for `trigger(Trigger::Requested(reason))`.
    pub fn request_shutdown(&self, reason: impl Into<String>) -> bool {
        self.trigger(Trigger::Requested(reason.into()))
    }

    /// What started the shutdown, once it has started.
    pub fn trigger_reason(&self) -> Option<&Trigger> {
        self.inner.trigger.get().map(|(trigger, _)| trigger)
    }

    /// Resolves once the shutdown has been triggered. Cancel-safe.
    pub async fn triggered(&self) {
        self.inner.triggered.cancelled().await;
    }

    /// Resolves once the drain has begun (after the pre-stop delay): the drain signal
    /// for handlers of long-lived responses (a server stream, an SSE or WebSocket
    /// session), which should then end their response properly instead of waiting to
    /// be cut at the deadline. [`request_token`](Self::request_token) is the later
    /// signal, at the deadline. Cancel-safe; resolves at once when the drain has
    /// already begun. [`drain_signal`](Self::drain_signal) is the same signal as a value
    /// to keep (in an extractor, a stream, a session).
    ///
    /// ```
    /// use shutdown_core::Shutdown;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = Shutdown::default();
    /// let stream = tokio::spawn({
    ///     let shutdown = shutdown.clone();
    ///     async move {
    ///         shutdown.draining().await;
    ///         "ended with a status"
    ///     }
    /// });
    /// shutdown.request_shutdown("deploy");
    /// shutdown.drain().await;
    /// assert_eq!(stream.await.unwrap(), "ended with a status");
    /// # }
    /// ```
    pub async fn draining(&self) {
        self.reached(Phase::Draining).await;
    }

    /// The signal that fires when the drain begins (after the pre-stop delay): for
    /// long-lived handlers (SSE, WebSocket, long polls) to end on their own, and count
    /// as drained rather than interrupted at the deadline. See [`DrainSignal`].
    pub fn drain_signal(&self) -> DrainSignal {
        DrainSignal::new(self.clone())
    }

    pub(crate) fn upgrade_rejection(&self) -> &RejectionPolicy {
        &self.inner.upgrade_rejection
    }

    pub(crate) fn drain_notify(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.drain_started)
    }

    pub(crate) fn record_stream_closed(&self) {
        self.inner.streams_closed.fetch_add(1, Ordering::Relaxed);
        if let Some(observer) = self.observer() {
            observer.stream_closed();
        }
    }

    /// Long-lived responses ended by the drain signal so far (see
    /// [`DrainSignal::stream_closed`]).
    pub fn streams_closed_by_drain(&self) -> u64 {
        self.inner.streams_closed.load(Ordering::Relaxed)
    }

    // ----- cancellation and background tasks ------------------------------------------

    /// The root token: cancelled after the drain, when background work must stop
    /// (step 5). Every other token of this handle is its child.
    pub fn token(&self) -> CancellationToken {
        self.inner.root.clone()
    }

    /// A new child of the root token, for a subsystem that may also be cancelled on its
    /// own.
    pub fn child_token(&self) -> CancellationToken {
        self.inner.root.child_token()
    }

    /// The request-scope token: cancelled at the drain deadline, so that handlers
    /// still running can give up. Clone it once per handler that needs it, not per
    /// request in middleware: cloning a token takes a lock.
    pub fn request_token(&self) -> CancellationToken {
        self.inner.requests.clone()
    }

    /// Spawns a background task on the tracker. It should watch [`token`](Self::token)
    /// and return once it is cancelled; the shutdown waits for it up to
    /// [`ShutdownConfig::task_timeout`].
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.tasks.spawn(task)
    }

    /// Tracks `future` like a task from [`spawn`](Self::spawn), without spawning it: for
    /// a future run some other way (`tokio::task::spawn_local`, a `JoinSet`, another
    /// runtime). The shutdown waits, up to [`ShutdownConfig::task_timeout`], until the
    /// returned future completes or is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = shutdown_core::Shutdown::default();
    /// let token = shutdown.token();
    /// let local = tokio::task::LocalSet::new();
    /// local.spawn_local(shutdown.track_future(async move { token.cancelled().await }));
    /// # }
    /// ```
    pub fn track_future<F: Future>(&self, future: F) -> impl Future<Output = F::Output> + use<F> {
        self.inner.tasks.track_future(future)
    }

    /// Spawns a background task whose failure is fatal: when it returns `Err` or
    /// panics, the shutdown is triggered with [`Trigger::TaskFailed`]. Returning
    /// `Ok(())` ends the task quietly. Tracked like [`spawn`](Self::spawn).
    pub fn spawn_supervised<F, E>(&self, name: impl Into<String>, task: F) -> JoinHandle<()>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let name = name.into();
        let shutdown = self.clone();
        let task = self.inner.tasks.spawn(task);
        self.inner.tasks.spawn(async move {
            let error = match task.await {
                Ok(Ok(())) => return,
                Ok(Err(error)) => error.to_string(),
                Err(join) if join.is_panic() => {
                    format!("panicked: {}", panic_message(join.into_panic().as_ref()))
                }
                Err(_) => return,
            };
            error!(task = %name, error = %error, "supervised task failed");
            shutdown.trigger(Trigger::TaskFailed { task: name, error });
        })
    }

    // ----- cleanup --------------------------------------------------------------------

    /// Registers a cleanup task to run after the drain and after background tasks have
    /// stopped. Tasks run one at a time, the last registered first, each under
    /// [`ShutdownConfig::cleanup_timeout`]. An error, a panic or a timeout is recorded
    /// in the report and the remaining tasks still run.
    ///
    /// `cleanup` is a closure returning `()` or `Result<(), E>`, or a closure returning
    /// a future of either (see [`IntoCleanup`]):
    ///
    /// ```
    /// # let shutdown = shutdown_core::Shutdown::default();
    /// shutdown.register_cleanup("close file", || std::fs::remove_file("/tmp/lock.pid"));
    /// shutdown.register_cleanup("close pool", || async move { /* pool.close().await */ });
    /// ```
    ///
    /// A task registered once cleanup has begun does not run; that is logged.
    pub fn register_cleanup<M>(&self, name: impl Into<String>, cleanup: impl IntoCleanup<M>) {
        let timeout = self.inner.config.cleanup_timeout();
        self.register_cleanup_with_timeout(name, timeout, cleanup);
    }

    /// Like [`register_cleanup`](Self::register_cleanup), with a timeout of its own.
    pub fn register_cleanup_with_timeout<M>(
        &self,
        name: impl Into<String>,
        timeout: Duration,
        cleanup: impl IntoCleanup<M>,
    ) {
        let name = name.into();
        if self.phase() >= Phase::CleaningUp {
            warn!(task = %name, "cleanup task registered after cleanup began; it will not run");
            return;
        }
        self.lock_cleanups()
            .push(CleanupTask::new(name, timeout, cleanup));
    }

    fn lock_cleanups(&self) -> std::sync::MutexGuard<'_, Vec<CleanupTask>> {
        // A panic while holding this lock cannot leave the list half-updated.
        self.inner
            .cleanups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    // ----- the sequence ---------------------------------------------------------------

    /// Waits for the trigger, then runs steps 1–4: the pre-stop delay and the drain
    /// with its deadline. Returns once no request is in flight or the deadline passed.
    ///
    /// The drain runs once: every caller, concurrent or later, gets the same summary.
    /// Cancel-safe: the deadline is fixed when the drain begins, and if the future is
    /// dropped, the next call continues the same drain, up to the same deadline.
    pub async fn drain(&self) -> DrainSummary {
        self.inner
            .drain
            .get_or_init(|| self.drain_once())
            .await
            .clone()
    }

    async fn drain_once(&self) -> DrainSummary {
        self.triggered().await;
        let (trigger, triggered_at) = match self.inner.trigger.get() {
            Some((trigger, at)) => (trigger.clone(), *at),
            None => unreachable!("`triggered` resolves only after the trigger is recorded"),
        };
        let config = &self.inner.config;

        let handoff = matches!(trigger, Trigger::Handoff { .. });
        let delay = if handoff {
            config.handoff_grace()
        } else {
            config.pre_stop_delay()
        };
        // A drain called again after its future was dropped is past the delay.
        let resumed = self.inner.drain_began.get().is_some();
        if handoff && !resumed {
            info!(
                grace_ms = millis(delay),
                in_flight = self.in_flight(),
                "handed over; serving the open connections (Connection: close) during the grace"
            );
            tokio::time::sleep_until(triggered_at + delay).await;
        } else if !handoff && !resumed && !delay.is_zero() {
            info!(
                delay_ms = millis(delay),
                in_flight = self.in_flight(),
                "not ready; still serving during the pre-stop delay"
            );
            tokio::time::sleep_until(triggered_at + delay).await;
        }
        let timeout = config.drain_timeout();
        let mut first = false;
        let &(drain_started, in_flight_at_drain) = self.inner.drain_began.get_or_init(|| {
            first = true;
            (Instant::now(), self.inner.in_flight.begin_drain())
        });
        if first {
            self.set_phase(Phase::Draining);
            self.inner.drain_started.notify_waiters();
            info!(
                in_flight = in_flight_at_drain,
                timeout_ms = millis(timeout),
                "draining in-flight requests"
            );
        }
        let pre_stop_delay = drain_started.saturating_duration_since(triggered_at);

        let deadline = drain_started + timeout;
        let mut drained = pin!(self.inner.in_flight.drained());
        let mut deadline_passed = pin!(tokio::time::sleep_until(deadline));
        let mut progress = tokio::time::interval_at(drain_started + PROGRESS_EVERY, PROGRESS_EVERY);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let timed_out = loop {
            tokio::select! {
                biased;
                () = &mut drained => break false,
                () = &mut deadline_passed => break true,
                _ = progress.tick() => info!(
                    in_flight = self.in_flight(),
                    remaining_ms = millis(deadline.saturating_duration_since(Instant::now())),
                    "draining"
                ),
            }
        };

        let interrupted = if timed_out {
            let left = self.in_flight();
            self.inner.requests.cancel();
            warn!(
                in_flight = left,
                timeout_ms = millis(timeout),
                "drain timeout: requests still in flight are interrupted"
            );
            left
        } else {
            info!(
                drained = in_flight_at_drain,
                elapsed_ms = millis(drain_started.elapsed()),
                "all requests completed"
            );
            0
        };

        let summary = DrainSummary {
            trigger,
            pre_stop_delay,
            duration: drain_started.elapsed(),
            in_flight_at_drain,
            interrupted,
            rejected: self.rejected(),
            streams_closed_by_drain: self.streams_closed_by_drain(),
        };
        if let Some(observer) = self.observer() {
            observer.drain_finished(&summary);
        }
        summary
    }

    /// Waits for the trigger and runs the whole sequence (the drain, if
    /// [`drain`](Self::drain) has not already run it, then steps 5–7), logs the report
    /// and returns it.
    ///
    /// Runs once: later calls return the same report.
    pub async fn run(&self) -> ShutdownReport {
        self.inner
            .report
            .get_or_init(|| self.run_once())
            .await
            .clone()
    }

    async fn run_once(&self) -> ShutdownReport {
        let mut drain = self.drain().await;
        self.set_phase(Phase::CleaningUp);

        // Step 5: background work.
        let tasks_started = Instant::now();
        self.inner.requests.cancel();
        self.inner.root.cancel();
        self.inner.tasks.close();
        let tasks_at_cancel = self.inner.tasks.len();
        let task_timeout = self.inner.config.task_timeout();
        if tasks_at_cancel > 0 {
            info!(tasks = tasks_at_cancel, "cancelling background tasks");
        }
        let tasks_abandoned =
            match tokio::time::timeout(task_timeout, self.inner.tasks.wait()).await {
                Ok(()) => 0,
                Err(_) => {
                    let left = self.inner.tasks.len();
                    warn!(
                        tasks = left,
                        timeout_ms = millis(task_timeout),
                        "background tasks did not stop in time; abandoned"
                    );
                    left
                }
            };
        let tasks_duration = tasks_started.elapsed();

        // Step 6: cleanup, last registered first.
        let cleanup_started = Instant::now();
        let tasks = std::mem::take(&mut *self.lock_cleanups());
        let mut cleanups = Vec::with_capacity(tasks.len());
        for task in tasks.into_iter().rev() {
            info!(task = %task.name, timeout_ms = millis(task.timeout), "running cleanup task");
            let outcome = task.run().await;
            log_cleanup(&outcome);
            if let Some(observer) = self.observer() {
                observer.cleanup_finished(&outcome);
            }
            cleanups.push(outcome);
        }
        let cleanup_duration = cleanup_started.elapsed();

        // Step 7: the report.
        drain.rejected = self.rejected();
        drain.streams_closed_by_drain = self.streams_closed_by_drain();
        let total = match self.inner.trigger.get() {
            Some((_, at)) => at.elapsed(),
            None => unreachable!("the drain ran, so the trigger is recorded"),
        };
        self.set_phase(Phase::Finished);
        let report = ShutdownReport {
            drain,
            tasks_at_cancel,
            tasks_abandoned,
            tasks_duration,
            cleanups,
            cleanup_duration,
            total,
            exit_codes: self.inner.config.exit_codes(),
        };
        if let Some(observer) = self.observer() {
            observer.shutdown_finished(&report);
        }
        report.log();
        report
    }

    fn set_phase(&self, phase: Phase) {
        self.inner.phase.store(phase as u8, Ordering::Release);
        self.inner.phase_tx.send_replace(phase);
        if let Some(observer) = self.observer() {
            observer.phase_changed(phase);
        }
    }
}

fn log_cleanup(outcome: &CleanupOutcome) {
    let duration_ms = millis(outcome.duration);
    if outcome.status.is_success() {
        info!(task = %outcome.name, duration_ms, "cleanup task completed");
    } else {
        warn!(
            task = %outcome.name,
            duration_ms,
            outcome = outcome.status.as_str(),
            error = %outcome.status,
            "cleanup task did not complete"
        );
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("phase", &self.phase())
            .field("in_flight", &self.in_flight())
            .field("trigger", &self.trigger_reason())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}
