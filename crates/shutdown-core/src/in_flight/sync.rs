//! What the tracker synchronises with: the standard atomics and tokio's `Notify`, or,
//! under `--cfg loom`, loom's atomics and a `Notify` with tokio's `notify_waiters`
//! semantics built on loom's mutex. The tracker's code is the same in both builds.

#[cfg(not(loom))]
pub(super) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(super) use tokio::sync::Notify;

#[cfg(loom)]
pub(super) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(super) use loom_only::Notify;

#[cfg(loom)]
mod loom_only {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::PoisonError;
    use std::task::{Context, Poll, Waker};

    use loom::sync::{Mutex, MutexGuard};

    /// tokio's `Notify` as the tracker uses it: [`notify_waiters`](Self::notify_waiters)
    /// wakes every [`Notified`] that exists when it is called, polled or not, and stores
    /// no permit for a later one (loom's own `Notify` stores one, which would hide a
    /// wake-up lost between the waiter's check and its wait).
    #[derive(Debug)]
    pub(in crate::in_flight) struct Notify {
        waiters: Mutex<Waiters>,
    }

    #[derive(Debug, Default)]
    struct Waiters {
        /// `notify_waiters` calls so far: a `Notified` created before a call completes.
        calls: usize,
        next_key: usize,
        wakers: Vec<(usize, Waker)>,
    }

    impl Notify {
        pub(in crate::in_flight) fn new() -> Self {
            Self {
                waiters: Mutex::new(Waiters::default()),
            }
        }

        fn lock(&self) -> MutexGuard<'_, Waiters> {
            self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
        }

        pub(in crate::in_flight) fn notified(&self) -> Notified<'_> {
            Notified {
                notify: self,
                calls: self.lock().calls,
                key: None,
            }
        }

        pub(in crate::in_flight) fn notify_waiters(&self) {
            let wakers = {
                let mut waiters = self.lock();
                waiters.calls += 1;
                std::mem::take(&mut waiters.wakers)
            };
            for (_, waker) in wakers {
                waker.wake();
            }
        }

        /// How many times `notify_waiters` was called: what the models count wake-ups by.
        #[cfg(test)]
        pub(in crate::in_flight) fn calls(&self) -> usize {
            self.lock().calls
        }
    }

    /// A wait for the next [`Notify::notify_waiters`].
    #[derive(Debug)]
    pub(in crate::in_flight) struct Notified<'a> {
        notify: &'a Notify,
        calls: usize,
        key: Option<usize>,
    }

    impl Notified<'_> {
        /// In tokio, registers for `notify_one`; `notify_waiters` reaches every
        /// `Notified` that exists whether enabled or not, so there is nothing to do.
        pub(in crate::in_flight) fn enable(self: Pin<&mut Self>) {}
    }

    impl Future for Notified<'_> {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let this = &mut *self;
            let mut waiters = this.notify.lock();
            let key = this.key.take();
            waiters.wakers.retain(|(k, _)| Some(*k) != key);
            if waiters.calls != this.calls {
                return Poll::Ready(());
            }
            let key = waiters.next_key;
            waiters.next_key += 1;
            waiters.wakers.push((key, cx.waker().clone()));
            this.key = Some(key);
            Poll::Pending
        }
    }

    impl Drop for Notified<'_> {
        fn drop(&mut self) {
            if let Some(key) = self.key {
                self.notify.lock().wakers.retain(|(k, _)| *k != key);
            }
        }
    }
}
