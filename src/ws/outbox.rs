//! One replayed session's bounded outbound queue: what it does when full (`ws.on_full`), and the
//! close frame that jumps it.

use super::*;

/// One session's bounded outbound queue.
#[derive(Debug)]
pub struct Outbox {
    /// Messages waiting for the writer, oldest first. A plain mutex: it is held only to push or pop.
    pub(super) q: Mutex<VecDeque<Message>>,
    /// How many messages may wait (`ws.queue`).
    pub(super) cap: usize,
    /// What a push into a full queue does: wait, drop the oldest, or close the session.
    pub(super) policy: OnFull,
    /// Wakes the writer when a message is queued.
    pub(super) more: Notify,
    /// Wakes pushers waiting for room when the writer takes a message, or the session closes.
    pub(super) room: Notify,
    /// Set once the session is closing: pushes are refused from then on.
    pub(super) closed: AtomicBool,
    /// How many messages `drop_oldest` has thrown away, for the log line.
    pub(super) dropped: AtomicU64,
}

impl Outbox {
    /// An empty queue holding at most `cap` messages.
    pub(super) fn new(cap: usize, policy: OnFull) -> Outbox {
        Outbox {
            q: Mutex::new(VecDeque::new()),
            cap,
            policy,
            more: Notify::new(),
            room: Notify::new(),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    /// The queue, locked (a poisoned lock is taken over: a queue of messages is whole at every step).
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Frames waiting to be written.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a message (at the front when `first`), applying the policy when full. `false` when the
    /// session is closed (or was closed by the policy).
    pub async fn push(&self, m: Message, first: bool, session: u64) -> bool {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut q = self.lock();
                if q.len() < self.cap {
                    if first {
                        q.push_front(m);
                    } else {
                        q.push_back(m);
                    }
                    drop(q);
                    self.more.notify_one();
                    return true;
                }
                match self.policy {
                    OnFull::Wait => {}
                    OnFull::DropOldest => {
                        q.pop_front();
                        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::warn!(
                            session,
                            dropped = n,
                            "WebSocket outbound queue full ({}): dropped the oldest frame",
                            self.cap
                        );
                        continue;
                    }
                    OnFull::Close => {
                        tracing::warn!(
                            session,
                            "WebSocket outbound queue full ({}): closing the session (1008)",
                            self.cap
                        );
                        q.clear();
                        q.push_back(Message::Close(Some(CloseFrame {
                            code: CloseCode::Policy,
                            reason: "outbound queue full: the client is not reading".into(),
                        })));
                        drop(q);
                        self.closed.store(true, Ordering::Release);
                        self.more.notify_one();
                        return false;
                    }
                }
            }
            room.await;
        }
    }

    /// Queues every message of `ready` in order, emptying it: those that fit under one lock and
    /// one wake of the writer, the rest one by one as [`Outbox::push`] does (its policy when
    /// full). `false` when the session is closed.
    pub async fn push_all(&self, ready: &mut Vec<Message>, session: u64) -> bool {
        if ready.is_empty() {
            return !self.closed.load(Ordering::Acquire);
        }
        let mut rest = ready.drain(..);
        {
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            let mut q = self.lock();
            let room = self.cap.saturating_sub(q.len());
            q.extend(rest.by_ref().take(room));
        }
        self.more.notify_one();
        for m in rest {
            if !self.push(m, false, session).await {
                return false;
            }
        }
        true
    }

    /// The next message to write, waiting for one.
    pub(super) async fn pop(&self) -> Message {
        loop {
            let more = self.more.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            if let Some(m) = self.lock().pop_front() {
                self.room.notify_waiters();
                return m;
            }
            more.await;
        }
    }

    /// The next message if one waits, without waiting (the writer takes what is queued at once
    /// and writes it with one flush).
    pub(super) fn try_pop(&self) -> Option<Message> {
        let m = self.lock().pop_front();
        if m.is_some() {
            self.room.notify_waiters();
        }
        m
    }

    /// Refuses further pushes and wakes everyone waiting, so no task is left parked on a dead session.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
        self.more.notify_waiters();
    }
}
