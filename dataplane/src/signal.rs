//! A single-threaded, one-shot broadcast flag: many tasks on one worker wait, one call fires it.
//! Used for "stop accepting on this listener" and "the worker is draining".

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Clone, Default)]
pub struct Signal {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    fired: Cell<bool>,
    next: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl Signal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fire(&self) {
        self.inner.fired.set(true);
        let waiters = std::mem::take(&mut *self.inner.waiters.borrow_mut());
        for (_, w) in waiters {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.inner.fired.get()
    }

    /// Completes once `fire` has been called.
    pub fn wait(&self) -> Wait {
        Wait {
            inner: self.inner.clone(),
            key: None,
        }
    }
}

/// Waits for a [`Signal`]; dropping it unregisters its waker.
pub struct Wait {
    inner: Rc<Inner>,
    key: Option<u64>,
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            self.inner.waiters.borrow_mut().remove(&k);
        }
    }
}

impl Future for Wait {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.fired.get() {
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(k) => k,
            None => {
                let k = self.inner.next.get();
                self.inner.next.set(k + 1);
                self.key = Some(k);
                k
            }
        };
        self.inner
            .waiters
            .borrow_mut()
            .insert(key, cx.waker().clone());
        Poll::Pending
    }
}
