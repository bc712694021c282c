//! Test scopes: a test is a unit of recording and replay. A scope is opened by
//! `POST /mock/admin/scope` (until the next one) or named per request in [`SCOPE_HEADER`], so
//! parallel workers can share one callvcr. The request's scope travels with its task (a task-local),
//! so the journal, the index and the recorder see it without every call passing it on; and the
//! [`Book`] keeps what each scope saw, for `GET /mock/admin/scopes` and the JUnit report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The request header naming a request's scope; stripped before matching, recording and forwarding.
pub const SCOPE_HEADER: &str = "x-callvcr-scope";

/// The longest scope name accepted (a pytest node id with parameters fits easily).
pub const MAX_NAME: usize = 512;

/// How many miss explanations a scope keeps (its count goes on past them).
const MAX_MISSES_KEPT: usize = 100;

tokio::task_local! {
    /// The scope of the request this task serves.
    static CURRENT: Arc<str>;
}

/// The scope of the request the current task serves, if any.
pub fn current() -> Option<Arc<str>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Runs `fut` as part of `scope`.
pub async fn within<F: std::future::Future>(scope: Arc<str>, fut: F) -> F::Output {
    CURRENT.scope(scope, fut).await
}

/// Checks a scope name: not empty, printable, at most [`MAX_NAME`] bytes.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a scope name is empty; end a scope with {\"name\": null}".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("a scope name is {} bytes; at most {MAX_NAME}", name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err("a scope name holds a control character".into());
    }
    Ok(())
}

/// What one scope saw in this run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Seen {
    /// Answered from its recordings (or the shared ones).
    pub hits: u64,
    /// Requests nothing recorded answered.
    pub misses: u64,
    /// Each miss explained (the first [`MAX_MISSES_KEPT`]): the request and its closest recording.
    pub missed: Vec<String>,
    /// Answered by an overlay in the platform's place.
    pub overlay_answers: u64,
    /// Injected faults fired.
    pub faults_fired: u64,
    /// Forwarded upstream (record modes).
    pub upstream: u64,
    /// callvcr's own refusals (bad request, not intercepted, unreadable cassette).
    pub refused: u64,
}

/// The open scope and what every scope saw, in the order they first appeared.
#[derive(Debug, Default)]
pub struct Book {
    /// Set once any scope was opened or named: until then a request pays nothing for scopes.
    used: AtomicBool,
    /// The scope `POST /mock/admin/scope` opened.
    open: Mutex<Option<Arc<str>>>,
    /// By name, with the order each first appeared.
    seen: Mutex<BTreeMap<Arc<str>, (usize, Seen)>>,
}

impl Book {
    /// Opens `name` (ending the scope open before), or ends it with `None`.
    pub fn open(&self, name: Option<&str>) -> Option<Arc<str>> {
        let scope: Option<Arc<str>> = name.map(Arc::from);
        if let Some(s) = &scope {
            self.used.store(true, Ordering::Relaxed);
            self.entry(s, |_| {});
        }
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = scope.clone();
        scope
    }

    /// The scope open now.
    pub fn opened(&self) -> Option<Arc<str>> {
        if !self.used.load(Ordering::Relaxed) {
            return None;
        }
        self.open.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A request's scope: the one its header names, else the one open.
    pub fn of_request(&self, header: Option<&http::HeaderValue>) -> Option<Arc<str>> {
        match header.and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| check_name(s).is_ok()) {
            Some(s) => {
                self.used.store(true, Ordering::Relaxed);
                Some(Arc::from(s))
            }
            None => self.opened(),
        }
    }

    /// Runs `f` on `scope`'s record, made on first sight.
    fn entry(&self, scope: &Arc<str>, f: impl FnOnce(&mut Seen)) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let n = seen.len();
        f(&mut seen.entry(scope.clone()).or_insert_with(|| (n, Seen::default())).1);
    }

    /// Counts one answer in `scope`, by what answered it (the journal's `answered_by`).
    pub fn count(&self, scope: &Arc<str>, answered_by: &str) {
        self.entry(scope, |s| match answered_by {
            "hit" => s.hits += 1,
            "miss" => s.misses += 1,
            "upstream" => s.upstream += 1,
            "callvcr" => s.refused += 1,
            a if a.starts_with("fault:") => s.faults_fired += 1,
            _ => s.overlay_answers += 1,
        });
    }

    /// Keeps a miss's explanation for `scope`; a miss shaped by an injected fault counts as a miss too.
    pub fn missed(&self, scope: &Arc<str>, explained: String, counted: bool) {
        self.entry(scope, |s| {
            if !counted {
                s.misses += 1;
            }
            if s.missed.len() < MAX_MISSES_KEPT {
                s.missed.push(explained);
            }
        });
    }

    /// Every scope seen, in the order each first appeared.
    pub fn all(&self) -> Vec<(Arc<str>, Seen)> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(usize, Arc<str>, Seen)> = seen.iter().map(|(k, (n, s))| (*n, k.clone(), s.clone())).collect();
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|(_, k, s)| (k, s)).collect()
    }

    /// Forgets every scope (the admin reset).
    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_names_its_scope_or_takes_the_open_one() {
        let b = Book::default();
        assert_eq!(b.of_request(None), None);
        b.open(Some("t1"));
        assert_eq!(b.of_request(None).as_deref(), Some("t1"));
        let h = http::HeaderValue::from_static("worker-2::t9");
        assert_eq!(b.of_request(Some(&h)).as_deref(), Some("worker-2::t9"));
        let blank = http::HeaderValue::from_static(" ");
        assert_eq!(b.of_request(Some(&blank)).as_deref(), Some("t1"), "an empty header falls back");
        b.open(None);
        assert_eq!(b.of_request(None), None);
        let s: Arc<str> = Arc::from("t1");
        for a in ["hit", "hit", "miss", "overlay:auth", "fault:status", "upstream", "callvcr"] {
            b.count(&s, a);
        }
        b.missed(&s, "GET api.mypurecloud.com/x".into(), true);
        let all = b.all();
        assert_eq!(all.len(), 1);
        let t1 = &all[0].1;
        assert_eq!(
            (t1.hits, t1.misses, t1.overlay_answers, t1.faults_fired, t1.upstream, t1.refused),
            (2, 1, 1, 1, 1, 1)
        );
        assert_eq!(t1.missed, vec!["GET api.mypurecloud.com/x".to_string()]);
        assert_eq!(within(s.clone(), async { current() }).await.as_deref(), Some("t1"));
        assert_eq!(current(), None);
        assert!(check_name("").is_err() && check_name("a\nb").is_err() && check_name(&"x".repeat(600)).is_err());
    }
}
