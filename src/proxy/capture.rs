//! What the web inspector shows of a request: its head and body, the answer, and the recording it
//! had. Captured only while a page watches the event stream, so the hit path pays one atomic read
//! otherwise. Secrets are redacted as a cassette stores them; bodies are cut at [`BODY_CAP`].

use std::cell::RefCell;
use std::collections::VecDeque;

use serde_json::{json, Value};

use super::*;

tokio::task_local! {
    /// The request this task is capturing: its body once read, its journal entries once noted.
    static CAPTURE: RefCell<Pending>;
}

/// What a captured request collects while it is answered.
#[derive(Debug, Default)]
struct Pending {
    /// The request body, once read.
    body: Option<Bytes>,
    /// The journal entries it made.
    seqs: Vec<u64>,
}

/// Captures kept, the newest last.
const KEPT: usize = 500;

/// Bytes of a body kept in a capture.
const BODY_CAP: usize = 64 * 1024;

/// The captures, by the journal entries they belong to.
#[derive(Debug, Default)]
pub struct Captures {
    /// (journal entries, what the inspector shows), oldest first.
    kept: Mutex<VecDeque<(Vec<u64>, Arc<Value>)>>,
}

impl Captures {
    /// The capture of journal entry `seq`, if it was captured and is still kept.
    pub fn get(&self, seq: u64) -> Option<Arc<Value>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().rev().find(|(seqs, _)| seqs.contains(&seq)).map(|(_, v)| v.clone())
    }

    /// Forgets every capture (a reset).
    pub fn clear(&self) {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn keep(&self, seqs: Vec<u64>, v: Value) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back((seqs, Arc::new(v)));
    }
}

/// Notes the request body once read (when this task captures).
pub(super) fn body_read(b: &Bytes) {
    let _ = CAPTURE.try_with(|c| c.borrow_mut().body = Some(b.clone()));
}

/// Notes a journal entry the request made (when this task captures).
pub(super) fn noted(seq: u64) {
    let _ = CAPTURE.try_with(|c| c.borrow_mut().seqs.push(seq));
}

/// A body as text for the page: at most [`BODY_CAP`] bytes, and whether it was cut.
fn shown(bytes: &[u8]) -> (Value, bool) {
    if bytes.is_empty() {
        return (Value::Null, false);
    }
    let cut = bytes.len() > BODY_CAP;
    (Value::String(String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_CAP)]).into_owned()), cut)
}

impl Proxy {
    /// The loaded cassette as the inspector lists it: its name, its exchanges (the first 5000) with
    /// whether each was served, and the cassettes a switch can go to.
    pub fn cassette_listing(&self) -> Value {
        if let Some(rec) = &self.recorder {
            // Recording: what has been stored so far (with record --missing, the index answers too).
            let stored = rec.store.load_all().unwrap_or_default();
            let total = stored.len();
            let exchanges: Vec<Value> = stored
                .iter()
                .rev()
                .take(5000)
                .rev()
                .map(|e| {
                    let r = &e.request;
                    json!({"seq": e.seq, "method": r.method, "host": r.host, "path": r.path, "query": r.query,
                           "status": e.response.status, "scope": e.scope, "stored": true})
                })
                .collect();
            return json!({
                "name": self.cassette_name.read().map(|s| s.clone()).unwrap_or_default(),
                "recording": true,
                "total": total,
                "exchanges": exchanges,
                "cassettes": [],
            });
        }
        let index = self.index();
        let exchanges: Vec<Value> = index
            .heads()
            .take(5000)
            .map(|h| {
                json!({"seq": h.seq, "method": h.method, "host": h.host, "path": h.path, "query": h.query,
                       "status": h.status, "scope": h.scope, "served": index.served_at(h.pos)})
            })
            .collect();
        let mut names: Vec<String> = self
            .cassettes_dir
            .as_ref()
            .and_then(|d| std::fs::read_dir(d).ok())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        json!({
            "name": self.cassette_name.read().map(|s| s.clone()).unwrap_or_default(),
            "total": index.len(),
            "exchanges": exchanges,
            "cassettes": names,
        })
    }

    /// [`Proxy::handle_request`], keeping the request and its answer for the inspector, and
    /// telling the pages watching that they can be read (`captured`).
    pub(super) async fn handle_captured(
        self: &Arc<Self>,
        req: Request<Incoming>,
        target: &Target,
        switch: Option<Arc<CutSwitch>>,
    ) -> Response<ProxyBody> {
        let (method, uri, headers) = (req.method().clone(), req.uri().clone(), req.headers().clone());
        let (r, pending) = CAPTURE
            .scope(RefCell::new(Pending::default()), async {
                let r = self.handle_request(req, target, switch).await;
                (r, CAPTURE.with(|c| std::mem::take(&mut *c.borrow_mut())))
            })
            .await;
        if pending.seqs.is_empty() {
            return r;
        }
        let (parts, body) = r.into_parts();
        let bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(never) => match never {},
        };
        let red = self.matcher.redactor();
        // What redaction replaced, by name only (`request.header.authorization`, `response.body.$.access_token`).
        let mut redacted: Vec<String> = Vec::new();
        let mut pairs = |side: &str, h: &HeaderMap| -> Vec<Value> {
            h.iter()
                .map(|(k, v)| {
                    let value = String::from_utf8_lossy(v.as_bytes());
                    let shown = red.header(k.as_str(), &value);
                    if shown != value {
                        redacted.push(format!("{side}.header.{}", k.as_str()));
                    }
                    json!([k.as_str(), shown])
                })
                .collect()
        };
        let (req_headers, resp_headers) = (pairs("request", &headers), pairs("response", &parts.headers));
        let req_body = pending.body.unwrap_or_default();
        let ct = header_of(&headers, "content-type");
        let req_shown = red.body(ct, &req_body);
        let resp_plain = decoded_body(&parts.headers, bytes.clone());
        let resp_shown = red.stored_body(header_of(&parts.headers, "content-type"), &resp_plain);
        for (side, before, after) in
            [("request", &req_body[..], &req_shown[..]), ("response", &resp_plain[..], &resp_shown[..])]
        {
            if before == after {
                continue;
            }
            match (serde_json::from_slice::<Value>(before), serde_json::from_slice::<Value>(after)) {
                (Ok(b), Ok(a)) => redacted.extend(
                    crate::cassette::explain::changed_paths(&b, &a).into_iter().map(|p| format!("{side}.body.{p}")),
                ),
                _ => redacted.push(format!("{side}.body")),
            }
        }
        let (rb, rb_cut) = shown(&req_shown);
        let (ab, ab_cut) = shown(&resp_shown);
        // The recording this request would get: what an overlay's answer departed from.
        let recorded = if self.recorder.is_none() {
            let (path, query) = (uri.path(), uri.query());
            let key = self.matcher.key_parts(
                method.as_str(),
                target.authority(),
                path,
                query,
                |h| header_of(&headers, h),
                &req_body,
            );
            let scope = crate::scope::current();
            self.index.read().peek_in_scope(key, sdk_of(&headers), scope.as_deref()).map(|p| {
                let e = &p.exchange;
                let (b, cut) = shown(&e.response.body.bytes);
                json!({"seq": e.seq, "status": e.response.status, "headers": e.response.headers,
                       "body": b, "body_truncated": cut, "fresh": p.fresh})
            })
        } else {
            None
        };
        let url =
            format!("{}://{}{}", target.scheme, target.authority(), uri.path_and_query().map_or("/", |p| p.as_str()));
        let v = json!({
            "seq": pending.seqs[0],
            "seqs": pending.seqs,
            "redacted": redacted,
            "request": {"method": method.as_str(), "url": red.url(&url), "headers": req_headers,
                        "body": rb, "body_bytes": req_body.len(), "body_truncated": rb_cut},
            "response": {"status": parts.status.as_u16(), "headers": resp_headers,
                         "body": ab, "body_bytes": resp_plain.len(), "body_truncated": ab_cut},
            "recorded": recorded,
        });
        self.captures.keep(pending.seqs.clone(), v);
        self.journal.live.publish("captured", &json!({"seqs": pending.seqs}));
        Response::from_parts(parts, Full::new(bytes))
    }
}
