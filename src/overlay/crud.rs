//! The CRUD overlay: root collections listed in `proxy.yaml` (`/api/v2/routing/queues`, ...) kept
//! in memory once a replay run changes them. Changes go to the cassette first (a recorded answer is
//! the platform's own, and its item joins the collection); where the cassette has none, the overlay
//! answers: `POST` creates (next numeric id or a fresh UUID; unspecified fields at their type's
//! default), `PATCH`/`PUT` merge, `DELETE` removes, unknown ids get 404. Once a collection changed,
//! its reads are answered from memory: a list is the recorded answer for that request with the run's
//! changes applied (never filtered or sorted), an item is the item or 404. A change deeper than one
//! item (`DELETE /roles/{id}/actions/{id}`) is answered 200 and changes nothing. Plain data.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{Answer, Basis, Call, Ctx, Decision, Evidence, Ids, Overlay, ParsedBody, Recorded};
use crate::cassette::Index;
use crate::config::Collection;
use crate::platform::ErrorKind;

/// Where a request falls in a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place<'a> {
    /// The collection itself.
    Root,
    /// One item.
    Item(&'a str),
    /// Below an item.
    Deeper,
}

/// What the cassette shows of one collection.
#[derive(Debug, Default, Clone)]
struct Base {
    /// Items by id, in the order first seen.
    items: Vec<(String, Value)>,
    /// Recorded list answers: (raw query, body).
    lists: Vec<(Option<String>, Value)>,
    /// Fields items carry, with a sample value (for the defaults of created items).
    fields: Map<String, Value>,
    /// Recorded success statuses of changes, by method.
    statuses: HashMap<String, u16>,
}

/// One recorded answer about a collection.
#[derive(Debug, Clone)]
struct Recording {
    /// Request method.
    method: String,
    /// About one item (else the collection itself).
    item: bool,
    /// Raw request query: a list answer is matched to the live request by it.
    query: Option<String>,
    /// Response status.
    status: u16,
    /// Response body, as recorded.
    body: Bytes,
}

/// A cassette and the positions of each collection's recordings in it.
type Picks = (Arc<Index>, Vec<Vec<u32>>);

/// One collection in memory, once changed.
#[derive(Debug, Clone)]
struct Live {
    /// Items by id as the run left them, in the order first seen (created ones last).
    items: Vec<(String, Value)>,
    /// Ids the run created.
    created: BTreeSet<String>,
    /// Ids of recorded items the run deleted.
    deleted: BTreeSet<String>,
}

/// The CRUD overlay.
#[derive(Debug)]
pub struct Crud {
    /// The collections `crud:` lists, checked; a request's collection is its index here.
    cols: Vec<Collection>,
    /// For fresh UUIDs and error correlation ids, from the run's seed.
    ids: Arc<Ids>,
    /// The cassette, and where each collection's recordings lie in it.
    raw: RwLock<Arc<Picks>>,
    /// Each collection's recorded state, read from its recordings when first needed.
    built: Mutex<HashMap<usize, Arc<Base>>>,
    /// Collections the run changed, by index; a collection absent here is answered by the cassette.
    live: Mutex<HashMap<usize, Live>>,
    /// Whether any collection changed in this run (read without the lock on the hit path).
    dirty: AtomicBool,
}

/// The id of an item as text (numbers too).
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A type's default value, never "now": empty string, 0, false, empty list, else null.
fn default_of(sample: &Value) -> Value {
    match sample {
        Value::String(_) => Value::String(String::new()),
        Value::Number(_) => Value::from(0),
        Value::Bool(_) => Value::Bool(false),
        Value::Array(_) => Value::Array(Vec::new()),
        _ => Value::Null,
    }
}

/// A JSON answer resting on the run: the run changed the collection, so it stands whatever the
/// recording shows.
fn json_answer(status: u16, body: &Value, detail: &str) -> Answer {
    Answer::json(status, body, detail)
}

impl Crud {
    /// An overlay over `cols`, learning items from `exchanges`.
    pub fn new(cols: Vec<Collection>, ids: Arc<Ids>, index: &Arc<Index>) -> Crud {
        let c = Crud {
            cols,
            ids,
            raw: RwLock::new(Arc::new((index.clone(), Vec::new()))),
            built: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            dirty: AtomicBool::new(false),
        };
        c.learn(index);
        c
    }

    /// Learns the collections from a cassette again (a cassette switch), and resets. Only where
    /// each collection's recordings lie is kept; they are read the first time a run changes that
    /// collection.
    pub fn learn(&self, index: &Arc<Index>) {
        let mut picks: Vec<Vec<u32>> = vec![Vec::new(); self.cols.len()];
        for h in index.heads() {
            let host = h.host.split(':').next().unwrap_or("");
            let Some((i, place)) = self.place(host, h.path) else { continue };
            if (200..300).contains(&h.status) && place != Place::Deeper {
                picks[i].push(h.pos as u32);
            }
        }
        *self.raw.write().unwrap_or_else(|e| e.into_inner()) = Arc::new((index.clone(), picks));
        self.built.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.reset_live();
    }

    /// What the cassette shows of collection `i` (read from its recordings on first use).
    fn base(&self, i: usize) -> Arc<Base> {
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = built.get(&i) {
            return b.clone();
        }
        let raw = self.raw.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (index, picks) = &*raw;
        let col = &self.cols[i];
        let mut b = Base::default();
        let mut at: HashMap<String, usize> = HashMap::new();
        let recordings = picks.get(i).into_iter().flatten().filter_map(|&p| {
            let e = index.exchange(p as usize).map_err(|e| tracing::error!("{e}")).ok()?;
            let host = e.request.host.split(':').next().unwrap_or("");
            let item = matches!(self.place(host, &e.request.path), Some((_, Place::Item(_))));
            Some(Recording {
                method: e.request.method.clone(),
                item,
                query: e.request.query.clone(),
                status: e.response.status,
                body: e.response.body.bytes.clone(),
            })
        });
        for r in recordings {
            if r.method != "GET" {
                b.statuses.entry(r.method.clone()).or_insert(r.status);
            }
            let Ok(body) = serde_json::from_slice::<Value>(&r.body) else { continue };
            let mut add = |b: &mut Base, item: &Value, full: bool| {
                let Some(id) = item.get(&col.id_field).and_then(id_text) else { return };
                if let Some(o) = item.as_object() {
                    for (k, v) in o {
                        if !v.is_null() && !b.fields.contains_key(k) {
                            b.fields.insert(k.clone(), v.clone());
                        }
                    }
                }
                match at.get(&id) {
                    // A full item answer replaces a list entry (often a summary).
                    Some(&pos) if full => b.items[pos].1 = item.clone(),
                    Some(_) => {}
                    None => {
                        at.insert(id.clone(), b.items.len());
                        b.items.push((id, item.clone()));
                    }
                }
            };
            match (r.method.as_str(), r.item) {
                ("GET", false) => {
                    for item in list_of(&body, &col.list_field).into_iter().flatten() {
                        add(&mut b, item, false);
                    }
                    b.lists.push((r.query.clone(), body));
                }
                ("GET", true) => add(&mut b, &body, true),
                ("PUT" | "PATCH", true) if body.is_object() => add(&mut b, &body, false),
                _ => {}
            }
        }
        let b = Arc::new(b);
        built.insert(i, b.clone());
        b
    }

    /// The changed collections, locked (a poisoned lock is taken over: the data is plain and whole).
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets every change of the run.
    fn reset_live(&self) {
        let mut live = self.live();
        live.clear();
        self.dirty.store(false, Ordering::Release);
    }

    /// Which collection `path` on `host` falls in, and where.
    fn place<'p>(&self, host: &str, path: &'p str) -> Option<(usize, Place<'p>)> {
        let path = path.trim_end_matches('/');
        self.cols.iter().enumerate().find_map(|(i, c)| {
            if c.host.as_ref().is_some_and(|h| !h.matches(host)) {
                return None;
            }
            let rest = path.strip_prefix(c.path.as_str())?;
            if rest.is_empty() {
                return Some((i, Place::Root));
            }
            let rest = rest.strip_prefix('/')?;
            Some((i, if rest.contains('/') { Place::Deeper } else { Place::Item(rest) }))
        })
    }

    /// The collection in memory (made from the recording on first use).
    fn live_of<'a>(&self, live: &'a mut HashMap<usize, Live>, i: usize) -> &'a mut Live {
        self.dirty.store(true, Ordering::Release);
        live.entry(i).or_insert_with(|| Live {
            items: self.base(i).items.clone(),
            created: BTreeSet::new(),
            deleted: BTreeSet::new(),
        })
    }

    /// The platform's 404 for `id`: the recorded `not.found` answer when the cassette holds one, else one
    /// built in the platform's shape.
    fn not_found(&self, call: &Call<'_>, recorded: Option<&Recorded>, id: &str) -> Answer {
        if let Some(a) = recorded.and_then(|r| r.get(404, "not.found")) {
            return a.clone();
        }
        super::platform_error(
            &self.ids,
            call.platform(),
            404,
            ErrorKind::NotFound { id },
            "The requested resource was not found.",
            json!([]),
            format!("crud-not-found:{id}"),
        )
    }

    /// A fresh id: one more than the largest when every id is a number, else a UUID.
    fn next_id(&self, items: &[(String, Value)], id_field: &str) -> Value {
        let nums: Option<Vec<(i64, bool)>> = items
            .iter()
            .map(|(id, v)| id.parse::<i64>().ok().map(|n| (n, v.get(id_field).is_some_and(Value::is_number))))
            .collect();
        match nums {
            Some(n) if !n.is_empty() => {
                let max = n.iter().map(|(x, _)| *x).max().unwrap_or(0);
                if n.iter().all(|(_, is_num)| *is_num) {
                    Value::from(max + 1)
                } else {
                    Value::String((max + 1).to_string())
                }
            }
            _ => Value::String(self.ids.uuid()),
        }
    }

    /// Creates an item from a request body; `recorded` is the platform's answer when there is one.
    fn create(&self, i: usize, body: &Value, recorded: Option<&Value>) -> Value {
        let col = &self.cols[i];
        let base = self.base(i);
        let mut live = self.live();
        let l = self.live_of(&mut live, i);
        let item = match recorded.filter(|r| r.get(&col.id_field).and_then(id_text).is_some()) {
            Some(r) => r.clone(),
            None => {
                let mut item: Map<String, Value> =
                    base.fields.iter().map(|(k, v)| (k.clone(), default_of(v))).collect();
                if let Some(o) = body.as_object() {
                    for (k, v) in o {
                        item.insert(k.clone(), v.clone());
                    }
                }
                let id = self.next_id(&l.items, &col.id_field);
                if item.contains_key("selfUri") {
                    item.insert(
                        "selfUri".into(),
                        Value::String(format!("{}/{}", col.path, id_text(&id).unwrap_or_default())),
                    );
                }
                item.insert(col.id_field.clone(), id);
                Value::Object(item)
            }
        };
        let id = item.get(&col.id_field).and_then(id_text).unwrap_or_default();
        l.items.retain(|(x, _)| *x != id);
        l.items.push((id.clone(), item.clone()));
        l.created.insert(id);
        item
    }

    /// Merges a body into item `id`; `None` when there is no such item, else `out` of the item as
    /// it now is (a recorded answer's change takes nothing out: the answer is the recording's).
    fn update<T>(&self, i: usize, id: &str, body: &Value, replace: bool, out: impl FnOnce(&Value) -> T) -> Option<T> {
        let mut live = self.live();
        let l = self.live_of(&mut live, i);
        let (_, item) = l.items.iter_mut().find(|(x, _)| x == id)?;
        self.merge(i, item, body, replace);
        Some(out(item))
    }

    /// `body` merged into `item` (all of it replaced, but its id, when `replace`).
    fn merge(&self, i: usize, item: &mut Value, body: &Value, replace: bool) {
        let col = &self.cols[i];
        let keep_id = item.get(&col.id_field).cloned();
        match (item.as_object_mut(), body.as_object()) {
            (Some(o), Some(b)) => {
                if replace {
                    o.retain(|k, _| *k == col.id_field);
                }
                for (k, v) in b {
                    o.insert(k.clone(), v.clone());
                }
            }
            _ => *item = body.clone(),
        }
        if let (Some(o), Some(idv)) = (item.as_object_mut(), keep_id) {
            o.insert(col.id_field.clone(), idv);
        }
    }

    /// Removes item `id`; `false` when there is none. A recorded item is remembered as deleted (so the
    /// list's `total` drops and later calls get 404); a created one is just forgotten.
    fn delete(&self, i: usize, id: &str) -> bool {
        let mut live = self.live();
        let l = self.live_of(&mut live, i);
        let before = l.items.len();
        l.items.retain(|(x, _)| x != id);
        if l.items.len() == before {
            return false;
        }
        if !l.created.remove(id) {
            l.deleted.insert(id.to_string());
        }
        true
    }

    /// The recorded list answer for `query` (else the first one) with the run's changes applied.
    fn list(&self, i: usize, query: Option<&str>) -> Value {
        let col = &self.cols[i];
        let base = self.base(i);
        let mut live = self.live();
        let l = self.live_of(&mut live, i).clone();
        let recorded = base
            .lists
            .iter()
            .find(|(q, _)| q.as_deref() == query)
            .or_else(|| base.lists.first())
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                serde_json::json!({col.list_field.as_str(): [], "pageSize": 25, "pageNumber": 1, "total": 0, "pageCount": 1})
            });
        let current = |id: &str| l.items.iter().find(|(x, _)| x == id).map(|(_, v)| v.clone());
        let mut out = recorded.clone();
        let Some(list) = list_mut(&mut out, &col.list_field) else { return recorded };
        let mut seen = BTreeSet::new();
        let mut next: Vec<Value> = Vec::new();
        for e in list.iter() {
            let Some(id) = e.get(&col.id_field).and_then(id_text) else {
                next.push(e.clone());
                continue;
            };
            seen.insert(id.clone());
            if let Some(v) = current(&id) {
                next.push(v);
            }
        }
        for id in &l.created {
            if !seen.contains(id) {
                if let Some(v) = current(id) {
                    next.push(v);
                }
            }
        }
        *list = next;
        if let Some(t) = out.get("total").and_then(Value::as_i64) {
            let total = t + l.created.len() as i64 - l.deleted.len() as i64;
            out["total"] = Value::from(total.max(0));
        }
        out
    }

    /// Whether the run changed collection `i` (the flag first, so unchanged runs never take the lock).
    fn changed(&self, i: usize) -> bool {
        self.dirty.load(Ordering::Acquire) && self.live().contains_key(&i)
    }

    /// The success status the platform recorded for `method` on this collection (a create may be
    /// 200 or 201 depending on the endpoint), else `default`.
    fn status(&self, i: usize, method: &str, default: u16) -> u16 {
        self.base(i).statuses.get(method).copied().unwrap_or(default)
    }
}

/// The items of a list answer: the body itself when it is an array, else its `field` (`entities`).
fn list_of<'a>(v: &'a Value, field: &str) -> Option<&'a Vec<Value>> {
    v.as_array().or_else(|| v.get(field)?.as_array())
}

/// [`list_of`], to change in place.
fn list_mut<'a>(v: &'a mut Value, field: &str) -> Option<&'a mut Vec<Value>> {
    if v.is_array() {
        return v.as_array_mut();
    }
    v.get_mut(field)?.as_array_mut()
}

impl Overlay for Crud {
    /// `crud`.
    fn name(&self) -> &'static str {
        "crud"
    }

    /// Once a collection changed: answers its list and item reads from memory, and a change to an item
    /// the run deleted with 404. Everything else goes on to the cassette.
    fn on_request(&self, call: &Call<'_>, _ctx: &mut Ctx, ev: &Evidence<'_>) -> Decision {
        let recorded = ev.recorded;
        let Some((i, place)) = self.place(call.host, call.path) else { return Decision::Continue };
        match (call.method, place) {
            ("GET", Place::Root) if self.changed(i) => {
                Decision::Answer(json_answer(200, &self.list(i, call.query), "crud-list"))
            }
            ("GET", Place::Item(id)) if self.changed(i) => {
                let mut live = self.live();
                let l = self.live_of(&mut live, i);
                match l.items.iter().find(|(x, _)| x == id) {
                    Some((_, v)) => Decision::Answer(json_answer(200, v, "crud-item")),
                    None if l.deleted.contains(id) => Decision::Answer(self.not_found(call, Some(recorded), id)),
                    // Not an item the run knows (`/users/me`, a view): the cassette answers.
                    None => Decision::Continue,
                }
            }
            // Deleted in this run: the platform has no such item any more. Other ids go to the
            // cassette (a miss there is a 404).
            ("PUT" | "PATCH" | "DELETE", Place::Item(id))
                if self.dirty.load(Ordering::Acquire)
                    && self.live().get(&i).is_some_and(|l| l.deleted.contains(id)) =>
            {
                Decision::Answer(self.not_found(call, Some(recorded), id))
            }
            _ => Decision::Continue,
        }
    }

    /// Applies a change the cassette answered with success to the collection in memory (the recorded item
    /// when the answer is one), leaving the body as recorded.
    fn on_answer(&self, call: &Call<'_>, _ctx: &Ctx, status: u16, body: &ParsedBody<'_>) -> Option<Bytes> {
        if !(200..300).contains(&status) || call.method == "GET" {
            return None;
        }
        let (i, place) = self.place(call.host, call.path)?;
        // The request's body is read only where the answer does not carry the item.
        let req = || call.json().unwrap_or(&Value::Null);
        let answered = body.json();
        match (call.method, place) {
            ("POST", Place::Root) => {
                self.create(i, req(), answered);
            }
            ("PUT" | "PATCH", Place::Item(id)) => {
                let col = &self.cols[i];
                // The platform's answer is the item as it now is, when it is one.
                match answered.filter(|a| a.get(&col.id_field).and_then(id_text).as_deref() == Some(id)) {
                    Some(full) => {
                        self.update(i, id, full, true, |_| ());
                    }
                    None => {
                        self.update(i, id, req(), call.method == "PUT", |_| ());
                    }
                }
            }
            ("DELETE", Place::Item(id)) => {
                self.delete(i, id);
            }
            _ => {}
        }
        None
    }

    /// Answers a change the cassette has no recording of, as the platform would: create, merge, delete,
    /// 404 for unknown ids, and 200 with no effect below an item.
    fn on_miss(&self, call: &Call<'_>, _ctx: &Ctx) -> Option<Answer> {
        let (i, place) = self.place(call.host, call.path)?;
        let changes = matches!(call.method, "POST" | "PUT" | "PATCH" | "DELETE");
        let req = call.json().unwrap_or(&Value::Null);
        match (call.method, place) {
            ("POST", Place::Root) => {
                let item = self.create(i, req, None);
                Some(json_answer(self.status(i, "POST", 200), &item, "crud-created"))
            }
            ("PUT" | "PATCH", Place::Item(id)) => {
                Some(match self.update(i, id, req, call.method == "PUT", Value::clone) {
                    Some(item) => json_answer(self.status(i, call.method, 200), &item, "crud-updated"),
                    None => self.not_found(call, None, id),
                })
            }
            ("DELETE", Place::Item(id)) => Some(if self.delete(i, id) {
                let status = self.status(i, "DELETE", 200);
                Answer {
                    status,
                    headers: Vec::new(),
                    body: Bytes::new(),
                    detail: "crud-deleted".into(),
                    not_before_ms: None,
                    basis: Basis::Run,
                }
            } else {
                self.not_found(call, None, id)
            }),
            ("GET", Place::Item(id)) if self.changed(i) => Some(self.not_found(call, None, id)),
            // Deeper than one item of a root collection: acknowledged, nothing changes.
            (_, Place::Deeper) if changes => Some(Answer {
                status: 200,
                headers: Vec::new(),
                body: Bytes::new(),
                detail: "crud-nested-noop".into(),
                not_before_ms: None,
                basis: Basis::Run,
            }),
            _ => None,
        }
    }

    /// Forgets the run's changes; what was learned from the cassette stays.
    fn reset(&self) {
        self.reset_live();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::Exchange;
    use serde_json::json;

    fn ex(seq: u64, method: &str, path: &str, query: Option<&str>, status: u16, resp: &Value) -> Exchange {
        crate::cassette::model::test_exchange(seq, method, path, query, "", status, &resp.to_string())
    }

    fn crud(items: Value) -> Crud {
        let cols = crate::config::stateful::crud(&Default::default(), &|_, m: String| m).unwrap();
        let list = json!({"entities": items, "pageSize": 25, "pageNumber": 1, "total": 2, "pageCount": 1});
        let index = crate::cassette::model::test_index(&[ex(1, "GET", "/api/v2/routing/queues", None, 200, &list)]);
        Crud::new(cols, Arc::new(Ids::new(3)), &index)
    }

    #[test]
    fn created_items_take_the_next_number_or_a_uuid_and_type_defaults() {
        let c = crud(
            json!([{"id": 7, "name": "a", "memberCount": 3, "createdDate": "2025-01-01T00:00:00Z", "division": {"id": "d"}}, {"id": 12, "name": "b"}]),
        );
        let item = c.create(0, &json!({"name": "new"}), None);
        assert_eq!(item, json!({"id": 13, "name": "new", "memberCount": 0, "createdDate": "", "division": null}));
        let c = crud(json!([{"id": "0b7c9a52-1111-4c47-9d0e-1f2a3b4c5d6e", "name": "a", "selfUri": "/x"}]));
        let item = c.create(0, &json!({"name": "new"}), None);
        let id = item["id"].as_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(item["selfUri"], format!("/api/v2/routing/queues/{id}"));
    }

    #[test]
    fn a_list_is_the_recorded_answer_with_the_changes_applied_unfiltered() {
        let c = crud(json!([{"id": "q1", "name": "a"}, {"id": "q2", "name": "b"}]));
        c.update(0, "q1", &json!({"name": "renamed"}), false, |_| ());
        assert!(c.delete(0, "q2"));
        assert!(!c.delete(0, "q2"), "already gone");
        let made = c.create(0, &json!({"name": "c"}), None);
        let v = c.list(0, Some("name=zzz"));
        let names: Vec<&str> = v["entities"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["renamed", "c"]);
        assert_eq!(v["total"], 2);
        assert_eq!(v["pageSize"], 25, "the recorded paging fields stay");
        assert_eq!(c.update(0, "nope", &json!({}), false, Value::clone), None);
        assert!(made["id"].as_str().is_some());
    }
}
