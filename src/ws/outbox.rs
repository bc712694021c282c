//! One replayed session's bounded outbound queue: what it does when full (`ws.on_full`), and the
//! close frame that jumps it.

use super::*;

/// One session's bounded outbound queue.
#[derive(Debug)]
pub struct Outbox {
    pub(super) q: Mutex<VecDeque<Message>>,
    pub(super) cap: usize,
    pub(super) policy: OnFull,
    pub(super) more: Notify,
    pub(super) room: Notify,
    pub(super) closed: AtomicBool,
    pub(super) dropped: AtomicU64,
}

impl Outbox {
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

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
        self.more.notify_waiters();
    }
}
