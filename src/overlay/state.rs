//! The state overlay: replayed calls move through their platform's states the way the platform
//! allows, and refuse the moves it refuses. Genesys Cloud call participants and NICE CXone contacts
//! (presets bound to the platforms' own endpoints), machines declared in `proxy.yaml` (resource,
//! triggers), and machines learned from the cassette where nothing else applies. A valid move from
//! the SDK happens when the platform (the cassette, or the overlay where the cassette has no answer)
//! accepts it; held and delayed moves wait for the admin API or the virtual clock; answers that show
//! a resource carry its current state; each move emits the platform's event (Genesys WebSocket
//! topics, NICE long polls). Plain data and virtual time: nothing here waits or touches a socket.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::machine::{Ask, Machine, Moved, Refusal, Refused, Session, Step};
use super::{Answer, Basis, Call, Ctx, Decision, Evidence, Ids, Overlay, Platform};
use crate::cassette::index::REQ_STATE;
use crate::cassette::schema::template;
use crate::cassette::{Exchange, Index};
use crate::clock::rfc3339_ms;
use crate::config::StateConfig;
use crate::platform::ErrorKind;

/// Where a session's moves come from and how its answers look.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A Genesys Cloud call conversation (participants).
    Genesys,
    /// A NICE CXone contact.
    Nice,
    /// A machine declared in `proxy.yaml` (index into the bindings).
    Declared(usize),
    /// A machine learned from the cassette, by (host, path template).
    Learned(String, String),
    /// Made by the admin API (the default machine).
    Admin,
}

#[derive(Debug, Clone)]
struct Tracked {
    session: Session,
    kind: Kind,
    /// Whether the run moved it where the recording did not go (an admin move or release, a
    /// timeout, a move the cassette held no answer for): from then on its refusals stand whatever
    /// the recording shows.
    departed: bool,
}

/// A machine learned from the cassette for one resource.
#[derive(Debug, Clone)]
pub struct Learned {
    /// Host.
    pub host: String,
    /// Path template of the resource.
    pub template: String,
    /// The field holding the state (`state`, or `participants[].state` for nested parties).
    pub field: String,
    /// The machine: states seen, moves seen.
    pub machine: Arc<Machine>,
    /// How many instances were seen.
    pub instances: usize,
    /// How often each move was seen.
    pub seen: BTreeMap<(String, String), usize>,
    /// One recorded path of the resource.
    pub sample: String,
}

/// What the cassette tells the overlay.
#[derive(Debug, Default)]
struct Book {
    /// Genesys conversation id → first recorded conversation body.
    conversations: HashMap<String, Value>,
    /// NICE contact id → first recorded contact event.
    contacts: HashMap<String, Value>,
    /// Learned machines by (host, template), top-level `state` fields only.
    learned: HashMap<(String, String), Learned>,
    /// Learned resource id → (host, template, first state).
    learned_ids: HashMap<String, (String, String, String)>,
    /// The platform's own refusals: (host, template, target state) → its answer.
    refusals: HashMap<(String, String, String), Answer>,
    /// Changes the recording shows the platform accepting, as (host, method, template): evidence
    /// that this org allows them, whatever the documentation says.
    allowed: std::collections::HashSet<(String, String, String)>,
}

/// An event a move makes, for the proxy to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// The session it is about.
    pub conversation: String,
    /// The one topic it goes to (a declared machine's); `None` = the Genesys call topics.
    pub topic: Option<String>,
    /// The `eventBody` (a call conversation, or a declared resource's id and state).
    pub body: Value,
}

impl Emitted {
    /// Whether a subscribed topic receives it: its own topic, or for a Genesys call the
    /// conversation topics of users and queues (`v2.users.{id}.conversations.calls`, ...).
    pub fn wants(&self, topic: &str) -> bool {
        match &self.topic {
            Some(t) => t == topic,
            None => topic.ends_with(".conversations.calls"),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    sessions: BTreeMap<String, Tracked>,
    /// The last conversation body served per Genesys conversation (events are built from it).
    snapshots: HashMap<String, Value>,
    emitted: Vec<Emitted>,
    nice_events: VecDeque<Value>,
}

/// The state overlay.
#[derive(Debug)]
pub struct State {
    cfg: StateConfig,
    ids: Arc<Ids>,
    book: RwLock<Arc<Book>>,
    inner: Mutex<Inner>,
    generation: std::sync::atomic::AtomicU64,
    /// Events wait in `inner.emitted`.
    pending: std::sync::atomic::AtomicBool,
    /// Whether the book holds learned machines (read per answer without the book's lock).
    learned_any: std::sync::atomic::AtomicBool,
}

/// A refusal for the admin API: status, error code, message.
pub type AdminError = (u16, &'static str, String);

/// A Genesys call path: (conversation id, participant id, whether it is the calls API).
fn genesys_path(path: &str) -> Option<(&str, Option<&str>, bool)> {
    let rest = path.strip_prefix("/api/v2/conversations/")?;
    let (calls, rest) = match rest.strip_prefix("calls/") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let mut it = rest.trim_end_matches('/').split('/');
    let cid = it.next().filter(|c| !c.is_empty() && *c != "calls")?;
    match (it.next(), it.next(), it.next()) {
        (None, _, _) => Some((cid, None, calls)),
        (Some("participants"), Some(pid), None) => Some((cid, Some(pid), calls)),
        (Some("disconnect"), None, _) if !calls => Some((cid, None, false)),
        _ => None,
    }
}

/// A NICE agent-session interaction path: (session id, contact id, action).
fn nice_path(path: &str) -> Option<(&str, &str, String)> {
    let lower = path.to_ascii_lowercase();
    let i = lower.find("/agent-sessions/")?;
    let rest = &path[i + "/agent-sessions/".len()..];
    let mut it = rest.split('/');
    let sid = it.next()?;
    if !it.next()?.eq_ignore_ascii_case("interactions") {
        return None;
    }
    let contact = it.next()?;
    let action = it.next()?.to_ascii_lowercase();
    it.next().is_none().then_some((sid, contact, action))
}

/// The NICE session id of a `get-next-event` long poll.
fn nice_poll(path: &str) -> Option<&str> {
    let lower = path.to_ascii_lowercase();
    if !lower.ends_with("/get-next-event") {
        return None;
    }
    let i = lower.find("/agent-sessions/")?;
    path[i + "/agent-sessions/".len()..].split('/').next()
}

/// What a NICE interaction action does: a move to a state, or a flag set on or off.
type NiceEffect = (Option<&'static str>, Option<(&'static str, bool)>);

/// The effect of a NICE interaction action.
fn nice_action(action: &str) -> Option<NiceEffect> {
    Some(match action {
        "accept" | "resume" => (Some("Active"), None),
        "hold" => (Some("Holding"), None),
        "end" | "reject" => (Some("Disconnected"), None),
        "mute" => (None, Some(("muted", true))),
        "unmute" => (None, Some(("muted", false))),
        "record" => (None, Some(("recording", true))),
        _ => return None,
    })
}

/// The host without a port.
fn bare(host: &str) -> &str {
    host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map(|(h, _)| h).unwrap_or(host)
}

/// The id segments of `path` under its template (the values of the `{...}` parts), in order.
fn ids_in(path: &str, tpl: &str) -> Vec<String> {
    path.split('/').zip(tpl.split('/')).filter(|(_, t)| t.starts_with('{')).map(|(p, _)| p.to_string()).collect()
}

fn is_change(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// A participant's state and purpose in a Genesys body (calls API: on the participant; the
/// conversations API: on its first call).
fn participant_state(p: &Value) -> Option<(&str, &str, &str)> {
    let id = p.get("id")?.as_str()?;
    let purpose = p.get("purpose").and_then(Value::as_str).unwrap_or("");
    let state = p
        .get("state")
        .and_then(Value::as_str)
        .or_else(|| p.get("calls")?.as_array()?.first()?.get("state")?.as_str())?;
    Some((id, purpose, state))
}

impl State {
    /// An overlay with `cfg`, learning from the cassette `index` holds.
    pub fn new(cfg: StateConfig, ids: Arc<Ids>, index: &Index) -> State {
        let s = State {
            cfg,
            ids,
            book: RwLock::new(Arc::new(Book::default())),
            inner: Mutex::new(Inner::default()),
            generation: std::sync::atomic::AtomicU64::new(0),
            pending: std::sync::atomic::AtomicBool::new(false),
            learned_any: std::sync::atomic::AtomicBool::new(false),
        };
        s.learn(index);
        s
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn book(&self) -> Arc<Book> {
        self.book.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Learns again from a cassette (a cassette switch), and resets.
    pub fn learn(&self, index: &Index) {
        let learned = if self.cfg.learn { learned_of(index) } else { Vec::new() };
        let mut book = Book::default();
        // Only what the overlay uses is read: call and contact answers, and refused changes.
        let wanted = |method: &str, path: &str, status: u16, state: bool| {
            if method == "GET" {
                (200..300).contains(&status) && (genesys_path(path).is_some() || nice_poll(path).is_some())
            } else {
                status >= 400 && is_change(method) && state
            }
        };
        let picked = index.select(|h| wanted(h.method, h.path, h.status, h.flags & REQ_STATE != 0));
        for e in &picked {
            let status = e.response.status;
            let host = bare(&e.request.host).to_string();
            let Ok(body) = serde_json::from_slice::<Value>(&e.response.body.bytes) else { continue };
            if e.request.method == "GET" && (200..300).contains(&status) {
                if let Some((cid, None, _)) = genesys_path(&e.request.path) {
                    if body.get("participants").is_some() {
                        book.conversations.entry(cid.to_string()).or_insert(body.clone());
                    }
                }
                if nice_poll(&e.request.path).is_some() {
                    for ev in body.get("events").and_then(Value::as_array).into_iter().flatten() {
                        let id = ev.get("ContactID").or_else(|| ev.get("ContactId"));
                        if let (Some(id), Some(_)) = (id.and_then(value_text), ev.get("Status")) {
                            book.contacts.entry(id).or_insert(ev.clone());
                        }
                    }
                }
            }
            if is_change(&e.request.method) && status >= 400 {
                if let Ok(req) = serde_json::from_slice::<Value>(&e.request.body.bytes) {
                    if let Some(to) = req.get("state").and_then(Value::as_str) {
                        let (tpl, _) = template(&e.request.path);
                        let answer = Answer {
                            status,
                            headers: e
                                .response
                                .headers
                                .iter()
                                .filter(|(k, _)| {
                                    !k.eq_ignore_ascii_case("content-length")
                                        && !k.eq_ignore_ascii_case("content-encoding")
                                })
                                .cloned()
                                .collect(),
                            body: e.response.body.bytes.clone(),
                            detail: "recorded-refusal".into(),
                            not_before_ms: None,
                            basis: Basis::Run,
                        };
                        book.refusals.entry((host.clone(), tpl, to.to_ascii_lowercase())).or_insert(answer);
                    }
                }
            }
        }
        // Learned machines apply only where no declared machine does.
        let declared = |host: &str, path: &str| {
            self.cfg.bindings.iter().filter(|b| b.covers(host)).any(|b| {
                b.resource.as_ref().is_some_and(|r| r.matches(path).is_some())
                    || b.triggers.iter().any(|t| t.path.matches(path).is_some())
            })
        };
        // A learned machine with no move seen would refuse every move: only those with moves apply.
        for l in learned.into_iter().filter(|l| !l.field.contains('[') && !l.seen.is_empty()) {
            if declared(&l.host, &l.sample) {
                continue;
            }
            book.learned.insert((l.host.clone(), l.template.clone()), l);
        }
        // First states of learned resources, by id.
        if !book.learned.is_empty() {
            let picked = index.select(|h| {
                h.method == "GET"
                    && (200..300).contains(&h.status)
                    && h.flags & crate::cassette::index::RESP_STATE != 0
                    && book.learned.contains_key(&(bare(h.host).to_string(), template(h.path).0))
            });
            for e in &picked {
                if e.request.method != "GET" || !(200..300).contains(&e.response.status) {
                    continue;
                }
                let host = bare(&e.request.host);
                let (tpl, _) = template(&e.request.path);
                let Some(l) = book.learned.get(&(host.to_string(), tpl.clone())) else { continue };
                let Ok(body) = serde_json::from_slice::<Value>(&e.response.body.bytes) else { continue };
                if let (Some(id), Some(st)) =
                    (ids_in(&e.request.path, &tpl).pop(), body.get(&l.field).and_then(Value::as_str))
                {
                    book.learned_ids.entry(id).or_insert((host.to_string(), tpl.clone(), st.to_string()));
                }
            }
        }
        // Only the operations a documented rule covers (call placement and answering) are looked
        // at: a cassette of a million exchanges pays a prefix test per head, nothing more.
        let covered = |h: &crate::cassette::index::Head<'_>| h.path.starts_with("/api/v2/conversations/calls");
        for h in index.heads().filter(|h| (200..300).contains(&h.status) && is_change(h.method) && covered(h)) {
            book.allowed.insert((bare(h.host).to_string(), h.method.to_string(), template(h.path).0));
        }
        self.learned_any.store(!book.learned.is_empty(), std::sync::atomic::Ordering::Release);
        *self.book.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(book);
        self.reset_sessions();
    }

    /// Notes that a session appeared or moved (its deadline may have changed).
    fn bump(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// A number that changes whenever a session appears or moves: the state clock looks again then.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn reset_sessions(&self) {
        self.bump();
        *self.inner() = Inner::default();
    }

    /// Learned machines, for the admin API and the CLI.
    pub fn learned(&self) -> Vec<Learned> {
        let mut v: Vec<Learned> = self.book().learned.values().cloned().collect();
        v.sort_by(|a, b| (&a.host, &a.template).cmp(&(&b.host, &b.template)));
        v
    }

    /// Every machine by name (presets, declared, learned), as JSON.
    pub fn machines(&self) -> Value {
        let mut out: Vec<Value> = self.cfg.machines.values().map(|m| machine_json(m)).collect();
        out.extend(self.learned().iter().map(|l| {
            let mut v = machine_json(&l.machine);
            v["learned"] = json!({"host": l.host, "resource": l.template, "field": l.field, "instances": l.instances});
            v
        }));
        Value::Array(out)
    }

    fn machine(&self, name: &str) -> Arc<Machine> {
        self.cfg.machines.get(name).cloned().unwrap_or_else(|| Arc::new(Machine::preset("generic").expect("preset")))
    }

    /// Makes the session `id` known from what the cassette holds, if it can: a Genesys conversation,
    /// a NICE contact, a learned resource.
    fn materialize(&self, inner: &mut Inner, id: &str, now: i64) -> bool {
        if inner.sessions.contains_key(id) {
            return true;
        }
        let book = self.book();
        if let Some(body) = book.conversations.get(id) {
            let mut s = Session::empty(id, self.machine("genesys-call"));
            seed_parties(&mut s, body, now);
            inner.sessions.insert(id.to_string(), Tracked { session: s, kind: Kind::Genesys, departed: false });
            self.bump();
            inner.snapshots.insert(id.to_string(), body.clone());
            return true;
        }
        if let Some(ev) = book.contacts.get(id) {
            let mut s = Session::empty(id, self.machine("nice-contact"));
            let st = ev.get("Status").and_then(value_text).unwrap_or_else(|| "Incoming".into());
            let i = s.add_party(id, "contact", &st, now);
            s.parties[i].last_recorded = Some(s.parties[i].state.clone());
            inner.sessions.insert(id.to_string(), Tracked { session: s, kind: Kind::Nice, departed: false });
            self.bump();
            return true;
        }
        if let Some((host, tpl, st)) = book.learned_ids.get(id) {
            if let Some(l) = book.learned.get(&(host.clone(), tpl.clone())) {
                let mut s = Session::empty(id, l.machine.clone());
                let i = s.add_party(id, "", st, now);
                s.parties[i].last_recorded = Some(st.clone());
                inner.sessions.insert(
                    id.to_string(),
                    Tracked { session: s, kind: Kind::Learned(host.clone(), tpl.clone()), departed: false },
                );
                return true;
            }
        }
        false
    }

    /// Steps due by `now` in every session, with their events. The proxy calls it when the next
    /// deadline passes.
    pub fn tick(&self, now: i64) {
        let mut inner = self.inner();
        let ids: Vec<String> = inner.sessions.keys().cloned().collect();
        for id in ids {
            self.advance(&mut inner, &id, now);
        }
    }

    /// The next virtual time something happens on its own.
    pub fn next_deadline(&self) -> Option<i64> {
        self.inner().sessions.values().filter_map(|t| t.session.next_deadline()).min()
    }

    /// Whether moves made events not yet taken (read without the lock: asked after every request).
    pub fn has_events(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes the events moves have made since the last call.
    pub fn take_events(&self) -> Vec<Emitted> {
        let mut inner = self.inner();
        self.pending.store(false, std::sync::atomic::Ordering::Release);
        std::mem::take(&mut inner.emitted)
    }

    fn advance(&self, inner: &mut Inner, id: &str, now: i64) {
        let steps = match inner.sessions.get_mut(id) {
            Some(t) => t.session.advance(now),
            None => return,
        };
        if !steps.is_empty() {
            self.emit(inner, id, &steps, now);
        }
    }

    /// Records the events of `steps` (and flag changes, with empty steps) of session `id`.
    fn emit(&self, inner: &mut Inner, id: &str, steps: &[Step], now: i64) {
        self.bump();
        if steps.iter().any(|s| matches!(s.by, "admin" | "timeout" | "release")) {
            if let Some(t) = inner.sessions.get_mut(id) {
                t.departed = true;
            }
        }
        let Some(t) = inner.sessions.get(id) else { return };
        for s in steps {
            tracing::info!(session = id, party = %s.party, from = %s.from, to = %s.to, by = s.by, at = %rfc3339_ms(s.at_ms), "state moved");
        }
        match t.kind {
            Kind::Genesys => {
                let base = inner.snapshots.get(id).cloned().unwrap_or_else(|| json!({"id": id, "participants": []}));
                let mut body = base;
                apply_genesys(&mut body, &t.session, now);
                inner.emitted.push(Emitted { conversation: id.to_string(), topic: None, body });
                self.pending.store(true, std::sync::atomic::Ordering::Release);
            }
            Kind::Nice => {
                let book = self.book();
                for s in steps {
                    let mut ev = book
                        .contacts
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| json!({"Type": "CallContactEvent", "ContactID": id}));
                    ev["Status"] = Value::String(s.to.clone());
                    ev["LastStateChangeTime"] = Value::String(rfc3339_ms(s.at_ms));
                    inner.nice_events.push_back(ev);
                }
            }
            Kind::Declared(i) => {
                let b = &self.cfg.bindings[i];
                let Some(topic) = &b.topic else { return };
                for s in steps {
                    inner.emitted.push(Emitted {
                        conversation: id.to_string(),
                        topic: Some(topic.replace("{id}", id)),
                        body: json!({"id": id, b.state_field.as_str(): s.to, "previous": s.from, "at": rfc3339_ms(s.at_ms)}),
                    });
                    self.pending.store(true, std::sync::atomic::Ordering::Release);
                }
            }
            _ => {}
        }
    }

    /// A Genesys Cloud 400 (`bad.request`): its call rules' refusals.
    fn genesys_bad_request(&self, message: &str, detail: &str) -> Answer {
        super::platform_error(&self.ids, Platform::Genesys, 400, ErrorKind::BadRequest, message, json!([]), detail)
    }

    /// The Genesys refusal of a participant move.
    fn genesys_refusal(&self, host: &str, path: &str, from: &str, to: &str, what: &str) -> Answer {
        let (tpl, _) = template(path);
        if let Some(a) = self.book().refusals.get(&(host.to_string(), tpl, to.to_ascii_lowercase())) {
            return a.clone();
        }
        self.genesys_bad_request(
            &format!("The {what} cannot move from {from} to {to}."),
            &format!("invalid-transition:{from}->{to}"),
        )
    }

    fn refusal(&self, machine: &Machine, call: &Call<'_>, from: &str, to: &str, what: &str) -> Answer {
        let (tpl, _) = template(call.path);
        if let Some(a) = self.book().refusals.get(&(call.host.to_string(), tpl, to.to_ascii_lowercase())) {
            return a.clone();
        }
        let detail = format!("invalid-transition:{from}->{to}");
        let msg = format!("The {what} cannot move from {from} to {to}.");
        let refuse = |p: Platform, status: u16, kind: ErrorKind<'_>| {
            super::platform_error(&self.ids, p, status, kind, &msg, json!([]), detail.clone())
        };
        match (machine.refusal, call.platform()) {
            (Refusal::Genesys, _) => refuse(Platform::Genesys, 400, ErrorKind::BadRequest),
            (Refusal::Nice, _) => refuse(Platform::Nice, 400, ErrorKind::InvalidState),
            (Refusal::Unprocessable, p @ (Platform::Genesys | Platform::Nice)) => {
                refuse(p, 422, ErrorKind::InvalidTransition)
            }
            (Refusal::Unprocessable, Platform::Other) => Answer::json(
                422,
                &json!({"error": "invalid_transition", "message": msg, "from": from, "to": to}),
                detail,
            ),
        }
    }

    /// What a request asks of a session: (session id, party id, target state, flags, kind).
    fn asked(&self, call: &Call<'_>) -> Option<Asked> {
        if !is_change(call.method) {
            return None;
        }
        let p = call.platform();
        if p == Platform::Genesys && self.cfg.presets.iter().any(|x| x == "genesys-call") {
            if let Some((cid, pid, _)) = genesys_path(call.path) {
                let body: Value = serde_json::from_slice(call.body).unwrap_or(Value::Null);
                let to = body.get("state").and_then(Value::as_str).map(str::to_ascii_lowercase);
                let flags: Vec<(String, bool)> = ["held", "muted", "recording", "confined"]
                    .iter()
                    .filter_map(|f| body.get(*f).and_then(Value::as_bool).map(|b| (f.to_string(), b)))
                    .collect();
                let to = match (call.method, pid, call.path.ends_with("/disconnect")) {
                    ("PATCH", Some(_), _) => to,
                    ("PATCH", None, false) => to.filter(|t| t == "disconnected"),
                    ("POST", None, true) => Some("disconnected".into()),
                    _ => return None,
                };
                if to.is_none() && flags.is_empty() {
                    return None;
                }
                return Some(Asked {
                    session: cid.to_string(),
                    party: pid.map(str::to_string),
                    all: pid.is_none(),
                    to,
                    flags,
                    kind: Kind::Genesys,
                });
            }
        }
        if p == Platform::Nice && self.cfg.presets.iter().any(|x| x == "nice-contact") {
            if let Some((_, contact, action)) = nice_path(call.path) {
                let (to, flag) = nice_action(&action)?;
                return Some(Asked {
                    session: contact.to_string(),
                    party: Some(contact.to_string()),
                    all: false,
                    to: to.map(String::from),
                    flags: flag.map(|(f, b)| vec![(f.to_string(), b)]).unwrap_or_default(),
                    kind: Kind::Nice,
                });
            }
        }
        for (i, b) in self.cfg.bindings.iter().enumerate().filter(|(_, b)| b.covers(call.host)) {
            for t in b.triggers.iter().filter(|t| t.method == call.method) {
                let Some(id) = t.path.id_of(call.path) else { continue };
                let body: Value = serde_json::from_slice(call.body).unwrap_or(Value::Null);
                if t.body.iter().all(|(k, v)| body.get(k) == Some(v)) {
                    return Some(Asked {
                        session: id.to_string(),
                        party: Some(id.to_string()),
                        all: false,
                        to: Some(t.to.clone()),
                        flags: Vec::new(),
                        kind: Kind::Declared(i),
                    });
                }
            }
        }
        let book = self.book();
        if !book.learned.is_empty() {
            let (tpl, _) = template(call.path);
            if let Some(l) = book.learned.get(&(call.host.to_string(), tpl.clone())) {
                let body: Value = serde_json::from_slice(call.body).unwrap_or(Value::Null);
                if let (Some(to), Some(id)) =
                    (body.get(&l.field).and_then(Value::as_str), ids_in(call.path, &tpl).pop())
                {
                    return Some(Asked {
                        session: id.clone(),
                        party: Some(id),
                        all: false,
                        to: Some(to.to_string()),
                        flags: Vec::new(),
                        kind: Kind::Learned(l.host.clone(), l.template.clone()),
                    });
                }
            }
        }
        None
    }

    /// Makes sure the session an SDK request names exists: from the cassette, or new for machines
    /// whose sessions start in their initial state (declared ones).
    fn session_for(&self, inner: &mut Inner, a: &Asked, now: i64) -> bool {
        if self.materialize(inner, &a.session, now) {
            return true;
        }
        if let Kind::Declared(i) = a.kind {
            let m = self.cfg.bindings[i].machine.clone();
            inner.sessions.insert(
                a.session.clone(),
                Tracked { session: Session::new(&a.session, m, now), kind: a.kind.clone(), departed: false },
            );
            return true;
        }
        false
    }

    /// Checks a request's move: `Some(refusal)` when the machine does not allow it.
    fn check(&self, call: &Call<'_>, a: &Asked, now: i64) -> Option<Answer> {
        let mut inner = self.inner();
        if !self.session_for(&mut inner, a, now) {
            return None;
        }
        self.advance(&mut inner, &a.session, now);
        let t = inner.sessions.get(&a.session)?;
        let parties: Vec<usize> = match &a.party {
            Some(p) => vec![t.session.party(p)?],
            None => (0..t.session.parties.len()).collect(),
        };
        let what = match t.kind {
            Kind::Genesys => "participant",
            Kind::Nice => "contact",
            _ => "resource",
        };
        for i in parties {
            let p = &t.session.parties[i];
            if let Some(to) = &a.to {
                let m = &t.session.machine;
                let Some(to) = m.canonical(to) else {
                    return Some(self.refusal(m, call, &p.state, to, what));
                };
                if a.all && m.is_terminal(&p.state) {
                    continue;
                }
                let ends_again = p.state == to && m.is_terminal(to);
                if (ends_again || p.state != to) && p.pending.is_none() && !m.allows(&p.state, to) {
                    return Some(match t.kind {
                        Kind::Genesys => self.genesys_refusal(call.host, call.path, &p.state, to, what),
                        _ => self.refusal(m, call, &p.state, to, what),
                    });
                }
            }
            if a.flags.iter().any(|(_, on)| *on) && t.session.machine.is_terminal(&p.state) {
                let flag = &a.flags.iter().find(|(_, on)| *on).expect("some flag is on").0;
                return Some(match t.kind {
                    Kind::Genesys => self.genesys_bad_request(
                        &format!("The participant is {}; it cannot be {flag}.", p.state),
                        &format!("flag-on-ended:{flag}"),
                    ),
                    _ => self.refusal(&t.session.machine, call, &p.state, flag, what),
                });
            }
        }
        None
    }

    /// Carries out a request's move once the platform accepted it.
    fn apply(&self, a: &Asked, now: i64) {
        let mut inner = self.inner();
        if !self.session_for(&mut inner, a, now) {
            // A party the cassette never showed: start tracking it where the move leaves it.
            let (Some(to), Kind::Nice) = (&a.to, &a.kind) else { return };
            let mut s = Session::empty(&a.session, self.machine("nice-contact"));
            s.add_party(&a.session, "contact", to, now);
            inner.sessions.insert(a.session.clone(), Tracked { session: s, kind: Kind::Nice, departed: false });
            self.bump();
            self.emit(&mut inner, &a.session.clone(), &[], now);
            return;
        }
        self.advance(&mut inner, &a.session, now);
        let Some(t) = inner.sessions.get_mut(&a.session) else { return };
        let parties: Vec<usize> = match &a.party {
            Some(p) => match t.session.party(p) {
                Some(i) => vec![i],
                None => {
                    // A participant the recordings never showed: tracked from here on.
                    let Some(to) = &a.to else { return };
                    vec![t.session.add_party(p, "", to, now)]
                }
            },
            None => (0..t.session.parties.len()).collect(),
        };
        let mut steps = Vec::new();
        let mut flagged = false;
        for i in parties {
            if let Some(to) = &a.to {
                if a.all && t.session.machine.is_terminal(&t.session.parties[i].state) {
                    continue;
                }
                match t.session.request(i, Ask::to(to, "sdk"), now) {
                    Ok(Moved::Now(s)) => steps.push(s),
                    Ok(Moved::Held(to)) => tracing::info!(session = %a.session, to = %to, "move held until released"),
                    Ok(Moved::Delayed(to, at)) => {
                        self.bump();
                        tracing::info!(session = %a.session, to = %to, at = %rfc3339_ms(at), "move delayed (carrier)")
                    }
                    Ok(Moved::Same) | Err(_) => {}
                }
            }
            for (f, on) in &a.flags {
                flagged |= t.session.set_flag(i, f, *on, now);
            }
        }
        if !steps.is_empty() || flagged {
            let id = a.session.clone();
            self.emit(&mut inner, &id, &steps, now);
        }
    }

    /// A Genesys conversation body as served: adopts moves the recording shows (platform-driven),
    /// then carries the session's current states and flags.
    /// A recorded call as the run has it: the recorded answer as it is while the run follows the
    /// recording, the session's own state once it left it (`repeated`: the answer is a recording
    /// served before).
    fn serve_genesys(&self, cid: &str, body: &[u8], now: i64, repeated: bool) -> Option<Bytes> {
        let mut v: Value = serde_json::from_slice(body).ok()?;
        v.get("participants")?;
        let mut inner = self.inner();
        if !inner.sessions.contains_key(cid) {
            let mut s = Session::empty(cid, self.machine("genesys-call"));
            seed_parties(&mut s, &v, now);
            inner.sessions.insert(cid.to_string(), Tracked { session: s, kind: Kind::Genesys, departed: false });
            self.bump();
        }
        self.advance(&mut inner, cid, now);
        let t = inner.sessions.get_mut(cid)?;
        let mut steps = Vec::new();
        for p in v["participants"].as_array().into_iter().flatten() {
            let Some((pid, purpose, recorded)) = participant_state(p) else { continue };
            steps.extend(follow_recording(&mut t.session, pid, purpose, recorded, now));
        }
        let departed = t.departed || repeated;
        let before = v.clone();
        if departed {
            apply_genesys(&mut v, &t.session, now);
        }
        inner.snapshots.insert(cid.to_string(), v.clone());
        if !steps.is_empty() {
            self.emit(&mut inner, cid, &steps, now);
        }
        if !departed {
            // The run is where the recording was: the platform's recorded answer stands.
            return None;
        }
        // Unchanged: the recorded bytes go out as they are.
        (v != before).then(|| serde_json::to_vec(&v).ok().map(Bytes::from)).flatten()
    }

    /// A resource body of a declared or learned machine as served, with its current state.
    fn serve_resource(
        &self,
        id: &str,
        field: &str,
        kind: Kind,
        body: &[u8],
        now: i64,
        repeated: bool,
    ) -> Option<Bytes> {
        let mut v: Value = serde_json::from_slice(body).ok()?;
        let recorded = v.get(field).and_then(Value::as_str).map(str::to_string);
        let mut inner = self.inner();
        if !self.materialize(&mut inner, id, now) {
            let machine = match &kind {
                Kind::Declared(i) => self.cfg.bindings[*i].machine.clone(),
                _ => return None,
            };
            inner.sessions.insert(
                id.to_string(),
                Tracked { session: Session::new(id, machine, now), kind: kind.clone(), departed: false },
            );
        }
        self.advance(&mut inner, id, now);
        let t = inner.sessions.get_mut(id)?;
        let steps: Vec<Step> =
            recorded.as_deref().and_then(|r| follow_recording(&mut t.session, id, "", r, now)).into_iter().collect();
        let state = t.session.parties.first()?.state.clone();
        let departed = t.departed || repeated;
        if !steps.is_empty() {
            self.emit(&mut inner, id, &steps, now);
        }
        if recorded.as_deref() == Some(state.as_str()) || !departed {
            return None;
        }
        if let Some(o) = v.as_object_mut() {
            o.insert(field.to_string(), Value::String(state));
        }
        serde_json::to_vec(&v).ok().map(Bytes::from)
    }

    /// What a learned machine's refusal rests on: the recordings it was learned from.
    fn learned_evidence(&self, id: &str) -> Option<String> {
        let key = match &self.inner().sessions.get(id)?.kind {
            Kind::Learned(host, tpl) => (host.clone(), tpl.clone()),
            _ => return None,
        };
        let book = self.book();
        let l = book.learned.get(&key)?;
        let moves: usize = l.seen.values().sum();
        Some(format!(
            "machine learned from {} recorded resource{} and {moves} recorded move{} (e.g. {}); this move was never recorded",
            l.instances,
            if l.instances == 1 { "" } else { "s" },
            if moves == 1 { "" } else { "s" },
            l.sample
        ))
    }

    /// Whether a refusal of a move of session `id` stands whatever a recorded answer shows: the
    /// session left the recording (see `Tracked::departed`), or its machine was learned from the
    /// recording itself (a move it never showed from this state).
    fn refusal_stands(&self, id: &str) -> bool {
        self.inner().sessions.get(id).is_some_and(|t| t.departed || matches!(t.kind, Kind::Learned(..)))
    }

    /// Genesys: a client-credentials token cannot place a call or answer one; the platform answers
    /// 400 (checked only when the auth overlay recognised the token).
    fn needs_user(&self, call: &Call<'_>, ctx: &Ctx) -> Option<Answer> {
        let principal = ctx.principal.as_ref().filter(|p| !p.user)?;
        if call.platform() != Platform::Genesys || !self.cfg.presets.iter().any(|p| p == "genesys-call") {
            return None;
        }
        let places = call.method == "POST" && call.path.trim_end_matches('/') == "/api/v2/conversations/calls";
        let answers = call.method == "PATCH"
            && matches!(genesys_path(call.path), Some((_, Some(_), _)))
            && serde_json::from_slice::<Value>(call.body).ok().is_some_and(|b| {
                b.get("state").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("connected"))
            });
        if !(places || answers) {
            return None;
        }
        let op = (call.host.to_string(), call.method.to_string(), template(call.path).0);
        if self.book().allowed.contains(&op) {
            tracing::debug!(
                method = call.method,
                path = call.path,
                "the recording shows this org accepting it: no user context needed"
            );
            return None;
        }
        Some(self.genesys_bad_request(
            "This request requires a user context. Client credentials cannot be used for requests to this resource.",
            &format!("client-credentials:{}", principal.client_id),
        ))
    }

    // ---- the admin API ----

    /// A session as the admin API shows it; `None` when callvcr knows no such session.
    pub fn view(&self, id: &str, now: i64) -> Option<Value> {
        let mut inner = self.inner();
        if !self.materialize(&mut inner, id, now) {
            return None;
        }
        self.advance(&mut inner, id, now);
        inner.sessions.get(id).map(view)
    }

    /// Every session callvcr tracks, briefly.
    pub fn list(&self, now: i64) -> Value {
        let mut inner = self.inner();
        let ids: Vec<String> = inner.sessions.keys().cloned().collect();
        for id in &ids {
            self.advance(&mut inner, id, now);
        }
        Value::Array(inner.sessions.values().map(view).collect())
    }

    /// An admin transition: `{"from"?, "to", "metadata"?}`; the party is `metadata.participantId`,
    /// else the customer (or the session itself). A session callvcr does not know yet is made with
    /// the default machine, in its initial state.
    pub fn transition(
        &self,
        id: &str,
        from: Option<&str>,
        to: &str,
        metadata: Value,
        now: i64,
    ) -> Result<Value, AdminError> {
        let mut inner = self.inner();
        if !self.materialize(&mut inner, id, now) {
            let m = self.machine(&self.cfg.default_machine);
            tracing::info!(session = id, machine = %m.name, "session made by the admin API");
            inner.sessions.insert(
                id.to_string(),
                Tracked { session: Session::new(id, m, now), kind: Kind::Admin, departed: false },
            );
            self.bump();
        }
        self.advance(&mut inner, id, now);
        let t = inner.sessions.get_mut(id).expect("just made");
        let party = metadata.get("participantId").and_then(Value::as_str);
        let i = t.session.resolve(party).map_err(|e| (404, "not_found", format!("session `{id}`: {e}")))?;
        let ask = Ask { to, expected: from, by: "admin", metadata: metadata.clone(), gated: true };
        let moved = t.session.request(i, ask, now).map_err(|e| {
            let machine = &t.session.machine.name;
            match e {
                Refused::WrongFrom { .. } | Refused::Busy(_) => (409, "conflict", format!("session `{id}`: {e}")),
                Refused::NoParty(_) => (404, "not_found", format!("session `{id}`: {e}")),
                Refused::NotAllowed { .. } | Refused::UnknownState(_) => (
                    422,
                    "invalid_transition",
                    format!("session `{id}` ({machine}): {e}; allowed from here: {}", allowed_from(&t.session, i)),
                ),
            }
        })?;
        let party_id = t.session.parties[i].id.clone();
        let mut out = json!({"id": id, "state": t.session.parties[i].state});
        if t.session.parties.len() > 1 || t.kind == Kind::Genesys {
            out["participantId"] = Value::String(party_id);
        }
        match moved {
            Moved::Now(step) => {
                self.emit(&mut inner, id, &[step], now);
            }
            Moved::Held(to) => out["held"] = Value::String(to),
            Moved::Delayed(to, at) => {
                self.bump();
                out["pending"] = json!({"to": to, "at": rfc3339_ms(at)});
            }
            Moved::Same => {}
        }
        Ok(out)
    }

    /// Releases a held move (of `participantId` when given, else the first party holding one).
    pub fn release(&self, id: &str, party: Option<&str>, now: i64) -> Result<Value, AdminError> {
        let mut inner = self.inner();
        if !self.materialize(&mut inner, id, now) {
            return Err((404, "not_found", format!("no session `{id}`; GET /mock/admin/sessions lists them")));
        }
        self.advance(&mut inner, id, now);
        let t = inner.sessions.get_mut(id).expect("materialized");
        let held = |p: &super::machine::Party| p.pending.as_ref().is_some_and(|x| x.due_ms.is_none());
        let i = match party {
            Some(p) => t.session.party(p).filter(|i| held(&t.session.parties[*i])),
            None => t.session.parties.iter().position(held),
        }
        .ok_or_else(|| (409, "conflict", format!("session `{id}` has no held transition to release")))?;
        let step = t.session.release(i, now).expect("a held move");
        let out = json!({"id": id, "state": step.to, "participantId": step.party});
        self.emit(&mut inner, id, &[step], now);
        Ok(out)
    }
}

/// What a request asks of a session.
#[derive(Debug, Clone)]
struct Asked {
    session: String,
    party: Option<String>,
    /// Every party (a whole-conversation disconnect).
    all: bool,
    to: Option<String>,
    flags: Vec<(String, bool)>,
    kind: Kind,
}

/// Whether `hay` contains `needle` (a cheap look before parsing a body).
fn mentions(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn allowed_from(s: &Session, i: usize) -> String {
    let moves: Vec<&String> = s.machine.allowed.get(&s.parties[i].state).into_iter().flatten().collect();
    if moves.is_empty() {
        "nothing".into()
    } else {
        moves.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
    }
}

fn machine_json(m: &Machine) -> Value {
    json!({
        "name": m.name,
        "states": m.states,
        "initial": m.initial,
        "transitions": m.allowed,
        "terminal": m.terminal,
        "timeout_state": m.timeout_state,
        "timeouts_ms": m.timeouts_ms,
        "flags": m.flags,
    })
}

fn view(t: &Tracked) -> Value {
    let s = &t.session;
    let primary = s.primary();
    let party_json = |p: &super::machine::Party| {
        let mut v = json!({
            "id": p.id,
            "state": p.state,
            "since": rfc3339_ms(p.entered_ms),
            "flags": p.flags.iter().map(|(k, f)| (k.clone(), json!({"on": f.on, "since": rfc3339_ms(f.since_ms)}))).collect::<Map<_, _>>(),
        });
        if !p.purpose.is_empty() {
            v["purpose"] = Value::String(p.purpose.clone());
        }
        if let Some(x) = &p.pending {
            v["pending"] = match x.due_ms {
                Some(at) => json!({"to": x.to, "at": rfc3339_ms(at)}),
                None => json!({"to": x.to, "held": true}),
            };
        }
        v
    };
    let (state, flags) = match primary {
        Some(i) => (Value::String(s.parties[i].state.clone()), party_json(&s.parties[i])["flags"].clone()),
        None => (Value::Null, json!({})),
    };
    let mut out = json!({
        "id": s.id,
        "machine": s.machine.name,
        "state": state,
        "flags": flags,
        "history": s.history.iter().map(|h| json!({
            "participantId": h.party, "from": h.from, "to": h.to, "at": rfc3339_ms(h.at_ms), "by": h.by, "metadata": h.metadata,
        })).collect::<Vec<_>>(),
    });
    if let Some(i) = primary {
        if let Some(p) = party_json(&s.parties[i]).get("pending") {
            out["pending"] = p.clone();
        }
    }
    if t.kind == Kind::Genesys || s.parties.len() > 1 {
        out["participants"] = Value::Array(s.parties.iter().map(party_json).collect());
    }
    out
}

/// Parties of a Genesys conversation from a recorded body, each in its recorded state.
fn seed_parties(s: &mut Session, body: &Value, now: i64) {
    for p in body.get("participants").and_then(Value::as_array).into_iter().flatten() {
        if let Some((id, purpose, state)) = participant_state(p) {
            if s.party(id).is_none() {
                let i = s.add_party(id, purpose, state, now);
                s.parties[i].last_recorded = Some(s.parties[i].state.clone());
            }
        }
    }
}

/// The recording shows party `pid` in `recorded`: when that is a move the recording made on its
/// own (the platform's doing, not the run's), and the machine allows it from where the run is, the
/// run makes it too. Returns the step taken, if any.
fn follow_recording(s: &mut Session, pid: &str, purpose: &str, recorded: &str, now: i64) -> Option<Step> {
    let i = match s.party(pid) {
        Some(i) => i,
        None => {
            let i = s.add_party(pid, purpose, recorded, now);
            s.parties[i].last_recorded = Some(s.parties[i].state.clone());
            return None;
        }
    };
    let recorded = s.machine.canonical(recorded).unwrap_or(recorded).to_string();
    let before = s.parties[i].last_recorded.replace(recorded.clone());
    if before.as_deref().is_some_and(|b| b != recorded) && s.parties[i].state != recorded {
        if let Ok(Moved::Now(step)) = s.request(i, Ask::to(&recorded, "recording").ungated(), now) {
            return Some(step);
        }
    }
    None
}

/// Writes the session's states and flags into a Genesys conversation body (calls API: on each
/// participant; conversations API: on each of its calls).
fn apply_genesys(v: &mut Value, s: &Session, _now: i64) {
    let Some(list) = v.get_mut("participants").and_then(Value::as_array_mut) else { return };
    let known: BTreeSet<&str> = list.iter().filter_map(|p| p.get("id")?.as_str()).collect();
    let missing: Vec<Value> = s
        .parties
        .iter()
        .filter(|p| !known.contains(p.id.as_str()))
        .map(|p| json!({"id": p.id, "purpose": if p.purpose.is_empty() { "customer" } else { p.purpose.as_str() }}))
        .collect();
    list.extend(missing);
    for p in list.iter_mut() {
        let Some(party) = p.get("id").and_then(Value::as_str).and_then(|id| s.party(id)).map(|i| &s.parties[i]) else {
            continue;
        };
        let mut targets: Vec<&mut Map<String, Value>> = Vec::new();
        let has_calls = p.get("calls").and_then(Value::as_array).is_some_and(|c| !c.is_empty());
        if has_calls {
            for c in p["calls"].as_array_mut().into_iter().flatten() {
                if let Some(o) = c.as_object_mut() {
                    targets.push(o);
                }
            }
        } else if let Some(o) = p.as_object_mut() {
            targets.push(o);
        }
        for o in targets {
            o.insert("state".into(), Value::String(party.state.clone()));
            for (name, f) in &party.flags {
                if f.on || o.contains_key(name) {
                    o.insert(name.clone(), Value::Bool(f.on));
                }
            }
            match party.flags.get("held") {
                Some(f) if f.on => {
                    o.insert("startHoldTime".into(), Value::String(rfc3339_ms(f.since_ms)));
                }
                _ => {
                    o.remove("startHoldTime");
                }
            }
            if party.timed_out {
                o.insert("disconnectType".into(), Value::String("timeout".into()));
            }
        }
    }
}

#[derive(Default)]
struct Acc {
    order: Vec<String>,
    sample: String,
    last: HashMap<String, String>,
    firsts: BTreeMap<String, usize>,
    seen: BTreeMap<(String, String), usize>,
}

impl Acc {
    fn observe(&mut self, id: &str, state: &str) {
        if !self.order.iter().any(|s| s == state) {
            self.order.push(state.to_string());
        }
        match self.last.insert(id.to_string(), state.to_string()) {
            None => *self.firsts.entry(state.to_string()).or_default() += 1,
            Some(prev) if prev != state => *self.seen.entry((prev, state.to_string())).or_default() += 1,
            Some(_) => {}
        }
    }
}

/// What learning found for one resource field, in a form a replay file keeps.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Part {
    host: String,
    template: String,
    field: String,
    order: Vec<String>,
    sample: String,
    instances: usize,
    firsts: Vec<(String, usize)>,
    seen: Vec<(String, String, usize)>,
}

/// Learns machines from exchanges seen one by one in recorded order (see [`learn`]); as an
/// [`Analysis`](crate::cassette::replayfile::Analysis) its result is kept in a cassette's replay
/// file, so replay need not read every exchange again.
#[derive(Default)]
pub struct Learner {
    accs: BTreeMap<(String, String, String), Acc>,
}

/// The name a [`Learner`]'s result is kept under.
pub const LEARNED: &str = "state.learned";

impl Learner {
    /// Sees one exchange (they must come in recorded order).
    pub fn observe(&mut self, e: &Exchange) {
        let accs = &mut self.accs;
        if !(200..300).contains(&e.response.status) {
            return;
        }
        let host = bare(&e.request.host).to_string();
        let (tpl, params) = template(&e.request.path);
        let Some(id) = ids_in(&e.request.path, &tpl).pop() else { return };
        if params.is_empty() {
            return;
        }
        let genesys_calls = genesys_path(&e.request.path).is_some() && Platform::of_host(&host) == Platform::Genesys;
        if e.request.method == "GET" {
            if !mentions(&e.response.body.bytes, b"\"state\"") {
                return;
            }
            let Ok(body) = serde_json::from_slice::<Value>(&e.response.body.bytes) else { return };
            if !genesys_calls {
                if let Some(st) = body.get("state").and_then(Value::as_str) {
                    let acc = accs.entry((host.clone(), tpl.clone(), "state".into())).or_default();
                    if acc.sample.is_empty() {
                        acc.sample = e.request.path.clone();
                    }
                    acc.observe(&id, st);
                }
            }
            for p in body.get("participants").and_then(Value::as_array).into_iter().flatten() {
                if let Some((pid, _, st)) = participant_state(p) {
                    accs.entry((host.clone(), tpl.clone(), "participants[].state".into()))
                        .or_default()
                        .observe(pid, st);
                }
            }
        } else if is_change(&e.request.method) {
            let Ok(req) = serde_json::from_slice::<Value>(&e.request.body.bytes) else { return };
            let Some(st) = req.get("state").and_then(Value::as_str) else { return };
            if !genesys_calls {
                if let Some(acc) = accs.get_mut(&(host.clone(), tpl.clone(), "state".into())) {
                    acc.observe(&id, st);
                }
            }
            // An accepted move of a nested party (`.../participants/{id}`): learned under its parent.
            let segs: Vec<&str> = tpl.rsplitn(3, '/').collect();
            if let [param, coll, parent] = segs[..] {
                if param.starts_with('{') {
                    let key = (host.clone(), parent.to_string(), format!("{coll}[].state"));
                    if let Some(acc) = accs.get_mut(&key) {
                        acc.observe(&id, st);
                    }
                }
            }
        }
    }

    fn parts(self) -> Vec<Part> {
        self.accs
            .into_iter()
            .filter(|(_, a)| !a.order.is_empty())
            .map(|((host, template, field), a)| Part {
                host,
                template,
                field,
                order: a.order,
                sample: a.sample,
                instances: a.last.len(),
                firsts: a.firsts.into_iter().collect(),
                seen: a.seen.into_iter().map(|((f, t), n)| (f, t, n)).collect(),
            })
            .collect()
    }
}

impl crate::cassette::replayfile::Analysis for Learner {
    fn name(&self) -> &'static str {
        LEARNED
    }

    fn observe(&mut self, e: &Exchange) {
        Learner::observe(self, e)
    }

    fn finish(self: Box<Self>) -> Value {
        serde_json::to_value(self.parts()).unwrap_or(Value::Null)
    }
}

/// Machines learned from a cassette: for each resource (host, path template with an id) whose
/// answers carry a string `state`, the states seen and the moves seen between consecutive answers
/// (and accepted requests that set `state`) of the same instance; nested parties (`participants`
/// with `id` and `state`) are learned as `participants[].state`.
pub fn learn<'a>(exchanges: impl IntoIterator<Item = &'a Exchange>) -> Vec<Learned> {
    let mut sorted: Vec<&Exchange> = exchanges.into_iter().collect();
    sorted.sort_by_key(|e| e.seq);
    let mut l = Learner::default();
    for e in sorted {
        l.observe(e);
    }
    machines(l.parts())
}

/// The machines learned for an indexed cassette: its replay file's result when it has one, else
/// learned from the exchanges that can teach anything (2xx answers mentioning `state`).
pub fn learned_of(index: &crate::cassette::Index) -> Vec<Learned> {
    use crate::cassette::index::{REQ_STATE, RESP_STATE};
    use serde::Deserialize as _;
    if let Some(v) = index.analysis(LEARNED) {
        match Vec::<Part>::deserialize(v) {
            Ok(parts) => return machines(parts),
            Err(e) => tracing::warn!("the replay file's learned machines do not read ({e}); learning again"),
        }
    }
    let picked = index.select(|h| (200..300).contains(&h.status) && h.flags & (REQ_STATE | RESP_STATE) != 0);
    learn(picked.iter().map(|e| &**e))
}

fn machines(parts: Vec<Part>) -> Vec<Learned> {
    parts
        .into_iter()
        .map(|p| {
            let a = Acc {
                order: p.order,
                sample: p.sample,
                last: HashMap::new(),
                firsts: p.firsts.into_iter().collect(),
                seen: p.seen.into_iter().map(|(f, t, n)| ((f, t), n)).collect(),
            };
            ((p.host, p.template, p.field), a, p.instances)
        })
        .map(|((host, tpl, field), a, instances)| {
            let initial = a
                .firsts
                .iter()
                .max_by_key(|(s, n)| (**n, std::cmp::Reverse(a.order.iter().position(|o| o == *s))))
                .map(|(s, _)| s.clone());
            let mut allowed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (f, t) in a.seen.keys() {
                allowed.entry(f.clone()).or_default().insert(t.clone());
            }
            let refusal = match Platform::of_host(&host) {
                Platform::Genesys => Refusal::Genesys,
                Platform::Nice => Refusal::Nice,
                Platform::Other => Refusal::Unprocessable,
            };
            let initial = initial.unwrap_or_else(|| a.order[0].clone());
            let machine =
                Machine::plain(format!("learned {host}{tpl} {field}"), a.order.clone(), initial, allowed, refusal);
            Learned {
                host,
                template: tpl,
                field,
                machine: Arc::new(machine),
                instances,
                seen: a.seen,
                sample: a.sample,
            }
        })
        .collect()
}

/// Learned machines as `proxy.yaml` text, for `callvcr state learn`.
pub fn learned_yaml(list: &[Learned]) -> String {
    let mut out = String::new();
    for l in list {
        let m = &l.machine;
        out.push_str(&format!(
            "# {}{} · field `{}` · {} instance(s), {} move(s) seen\n",
            l.host,
            l.template,
            l.field,
            l.instances,
            l.seen.values().sum::<usize>()
        ));
        out.push_str(&format!("- name: \"{}\"\n", m.name));
        if !l.field.contains('[') {
            out.push_str(&format!("  host: {}\n  resource: \"{}\"\n  state_field: {}\n", l.host, l.template, l.field));
        }
        out.push_str(&format!("  states: [{}]\n  initial: {}\n  transitions:\n", m.states.join(", "), m.initial));
        if m.allowed.is_empty() {
            out.push_str("    {}\n");
        }
        for (f, ts) in &m.allowed {
            let targets: Vec<&str> = ts.iter().map(String::as_str).collect();
            let counts: Vec<String> =
                ts.iter().map(|t| format!("{t} ×{}", l.seen.get(&(f.clone(), t.clone())).unwrap_or(&0))).collect();
            out.push_str(&format!("    {f}: [{}]    # seen {}\n", targets.join(", "), counts.join(", ")));
        }
        out.push('\n');
    }
    if list.is_empty() {
        out.push_str("# no resource in this cassette carries a `state` field that changes\n");
    }
    out
}

impl Overlay for State {
    fn name(&self) -> &'static str {
        "state"
    }

    fn on_request(&self, call: &Call<'_>, ctx: &mut Ctx, _ev: &Evidence<'_>) -> Decision {
        if call.platform() == Platform::Nice && call.method == "GET" {
            if let Some(sid) = nice_poll(call.path) {
                let mut inner = self.inner();
                if !inner.nice_events.is_empty() {
                    let events: Vec<Value> = inner.nice_events.drain(..).collect();
                    return Decision::Answer(Answer::json(
                        200,
                        &json!({"sessionId": sid, "events": events}),
                        format!("state-events:{}", events.len()),
                    ));
                }
            }
        }
        if let Some(a) = self.needs_user(call, ctx) {
            // Documentation, not evidence: yields to a recorded answer that shows the org allows it.
            return Decision::Answer(a.by_rule());
        }
        let Some(a) = self.asked(call) else { return Decision::Continue };
        match self.check(call, &a, ctx.now_ms) {
            // While the session is where the recording had it, the model's refusal yields to a
            // recorded answer accepting the move; once the run moved it elsewhere, it stands.
            Some(mut refusal) if self.refusal_stands(&a.session) => {
                if let Some(evidence) = self.learned_evidence(&a.session) {
                    refusal.detail = format!("{}; {evidence}", refusal.detail);
                    tracing::info!(method = call.method, path = call.path, "state refused: {}", refusal.detail);
                }
                Decision::Answer(refusal)
            }
            Some(refusal) => Decision::Answer(refusal.by_rule()),
            None => Decision::Continue,
        }
    }

    fn on_answer(&self, call: &Call<'_>, ctx: &Ctx, status: u16, body: &[u8]) -> Option<Bytes> {
        if !(200..300).contains(&status) {
            return None;
        }
        let now = ctx.now_ms;
        let repeated = ctx.repeated.load(std::sync::atomic::Ordering::Relaxed);
        if call.method == "GET" {
            if call.platform() == Platform::Genesys && self.cfg.presets.iter().any(|p| p == "genesys-call") {
                if let Some((cid, None, _)) = genesys_path(call.path) {
                    return self.serve_genesys(cid, body, now, repeated);
                }
            }
            for (i, b) in self.cfg.bindings.iter().enumerate().filter(|(_, b)| b.covers(call.host)) {
                if let Some(id) = b.resource.as_ref().and_then(|r| r.id_of(call.path)) {
                    return self.serve_resource(id, &b.state_field, Kind::Declared(i), body, now, repeated);
                }
            }
            if self.learned_any.load(std::sync::atomic::Ordering::Acquire) {
                let book = self.book();
                let (tpl, _) = template(call.path);
                if let Some(l) = book.learned.get(&(call.host.to_string(), tpl.clone())) {
                    let id = ids_in(call.path, &tpl).pop()?;
                    return self.serve_resource(&id, &l.field, Kind::Learned(l.host.clone(), tpl), body, now, repeated);
                }
            }
            return None;
        }
        if call.method == "POST" && call.path == "/api/v2/conversations/calls" && call.platform() == Platform::Genesys {
            // A placed call: its conversation is tracked from here (parties from the cassette).
            let v: Value = serde_json::from_slice(body).ok()?;
            let cid = v.get("id")?.as_str()?;
            let mut inner = self.inner();
            if !self.materialize(&mut inner, cid, now) {
                let s = Session::empty(cid, self.machine("genesys-call"));
                inner.sessions.insert(cid.to_string(), Tracked { session: s, kind: Kind::Genesys, departed: false });
                self.bump();
            }
            return None;
        }
        if let Some(a) = self.asked(call) {
            self.apply(&a, now);
        }
        None
    }

    fn on_miss(&self, call: &Call<'_>, ctx: &Ctx) -> Option<Answer> {
        // A valid move the cassette holds no answer for: accepted as the platform accepts it.
        let a = self.asked(call)?;
        let known = {
            let mut inner = self.inner();
            self.session_for(&mut inner, &a, ctx.now_ms)
        };
        if !known {
            return None;
        }
        self.apply(&a, ctx.now_ms);
        let mut inner = self.inner();
        if let Some(t) = inner.sessions.get_mut(&a.session) {
            t.departed = true;
        }
        let state = inner.sessions.get(&a.session).and_then(|t| {
            a.party.as_deref().and_then(|p| t.session.party(p)).map(|i| t.session.parties[i].state.clone())
        });
        Some(match a.kind {
            // The platform applies participant updates asynchronously: 202, no body.
            Kind::Genesys => Answer {
                status: 202,
                headers: Vec::new(),
                body: Bytes::new(),
                detail: "move-accepted".into(),
                not_before_ms: None,
                basis: Basis::Run,
            },
            Kind::Nice => Answer {
                status: 202,
                headers: Vec::new(),
                body: Bytes::new(),
                detail: "move-accepted".into(),
                not_before_ms: None,
                basis: Basis::Run,
            },
            Kind::Declared(i) => {
                let field = &self.cfg.bindings[i].state_field;
                Answer::json(200, &json!({"id": a.session, field.as_str(): state}), "move-accepted")
            }
            _ => Answer::json(200, &json!({"id": a.session, "state": state}), "move-accepted"),
        })
    }

    fn reset(&self) {
        self.reset_sessions();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn ex(seq: u64, method: &str, path: &str, req: &str, status: u16, resp: &str) -> Exchange {
        crate::cassette::model::test_exchange(seq, method, path, None, req, status, resp)
    }

    const W: &str = "/api/v2/widgets/0b7c9a52-1111-4c47-9d0e-1f2a3b4c5d6e";

    #[test]
    fn machines_are_learned_from_the_states_a_cassette_shows() {
        let other = "/api/v2/widgets/0b7c9a52-2222-4c47-9d0e-1f2a3b4c5d6e";
        let cassette = [
            ex(1, "GET", W, "", 200, r#"{"state":"new"}"#),
            ex(2, "PATCH", W, r#"{"state":"open"}"#, 200, "{}"),
            ex(3, "GET", W, "", 200, r#"{"state":"open"}"#),
            ex(4, "GET", W, "", 200, r#"{"state":"closed"}"#),
            ex(5, "GET", other, "", 200, r#"{"state":"new"}"#),
            ex(6, "GET", "/api/v2/widgets", "", 200, r#"{"state":"listed"}"#),
        ];
        let list = learn(&cassette);
        assert_eq!(list.len(), 1, "{list:?}");
        let l = &list[0];
        assert_eq!((l.template.as_str(), l.field.as_str(), l.instances), ("/api/v2/widgets/{widgetId}", "state", 2));
        let m = &l.machine;
        assert_eq!(m.states, ["new", "open", "closed"]);
        assert_eq!(m.initial, "new");
        assert!(m.allows("new", "open") && m.allows("open", "closed") && !m.allows("new", "closed"));
        assert_eq!(m.refusal, Refusal::Genesys);
        let y = learned_yaml(&list);
        assert!(y.contains("resource: \"/api/v2/widgets/{widgetId}\"") && y.contains("new: [open]"), "{y}");

        // Learned once when a replay file is written, kept in it: the same machines as learning again.
        let dir = std::env::temp_dir().join(format!("callvcr-learned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = crate::config::Config::default();
        let m = crate::cassette::Matcher::new(&cfg.matching, crate::cassette::Redactor::new(&cfg.redact));
        let records = cassette.iter().map(|e| Ok((e.seq, serde_json::to_vec(e).unwrap())));
        crate::cassette::replayfile::write(&dir, records, &[], &m, crate::overlay::analyses()).unwrap();
        let (file, _) = crate::cassette::replayfile::open(&dir, &m).unwrap();
        assert!(file.analysis(LEARNED).is_some());
        let kept = learned_of(&file);
        assert_eq!(learned_yaml(&kept), y);
        assert_eq!((kept[0].instances, &kept[0].seen, &kept[0].machine.states), (2, &l.seen, &l.machine.states));
        assert_eq!(learned_yaml(&learned_of(&crate::cassette::model::test_index(&cassette))), y);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn overlay(exchanges: &[Exchange]) -> State {
        State::new(StateConfig::default(), Arc::new(Ids::new(1)), &crate::cassette::model::test_index(exchanges))
    }

    const CALL: &str = "/api/v2/conversations/calls/5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";
    const CID: &str = "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";
    const AGENT: &str = "7d1e2f3a-0b1c-4d5e-8f9a-0b1c2d3e4f5a";

    fn call_body(agent: &str) -> String {
        format!(
            r#"{{"id":"{CID}","participants":[{{"id":"{AGENT}","purpose":"agent","state":"{agent}","held":false}},{{"id":"8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b","purpose":"customer","state":"connected","held":false}}]}}"#
        )
    }

    fn req<'a>(method: &'a str, path: &'a str, headers: &'a http::HeaderMap, body: &'a Bytes) -> Call<'a> {
        Call { method, host: "api.mypurecloud.com", path, query: None, headers, body }
    }

    #[test]
    fn genesys_participants_answer_hold_and_disconnect_and_refuse_a_reconnect() {
        let s = overlay(&[ex(1, "GET", CALL, "", 200, &call_body("alerting"))]);
        let h = http::HeaderMap::new();
        let ctx = Ctx { now_ms: 1_000, ..Default::default() };
        let patch = format!("{CALL}/participants/{AGENT}");
        let answer = Bytes::from_static(br#"{"state":"connected"}"#);
        let c = req("PATCH", &patch, &h, &answer);
        assert_eq!(
            s.on_request(
                &c,
                &mut Ctx { now_ms: 1_000, ..Default::default() },
                &Evidence::none(&crate::overlay::Recorded::default())
            ),
            Decision::Continue
        );
        s.on_answer(&c, &ctx, 202, b"");
        assert_eq!(s.view(CID, 1_000).unwrap()["participants"][0]["state"], "connected");
        let hold = Bytes::from_static(br#"{"held":true}"#);
        s.on_answer(&req("PATCH", &patch, &h, &hold), &ctx, 202, b"");
        let get = Bytes::new();
        // A fresh recording of the GET is what the platform answered there: served as recorded.
        assert_eq!(s.on_answer(&req("GET", CALL, &h, &get), &ctx, 200, call_body("alerting").as_bytes()), None);
        // A recording served before (the run went past it) shows the run's state instead.
        let again = Ctx { now_ms: 1_000, repeated: true.into(), ..Default::default() };
        let served = s.on_answer(&req("GET", CALL, &h, &get), &again, 200, call_body("alerting").as_bytes()).unwrap();
        let v: Value = serde_json::from_slice(&served).unwrap();
        assert_eq!(v["participants"][0]["state"], "connected");
        assert_eq!(v["participants"][0]["held"], true);
        assert_eq!(v["participants"][0]["startHoldTime"], "1970-01-01T00:00:01.000Z");
        let bye = Bytes::from_static(br#"{"state":"disconnected"}"#);
        s.on_answer(&req("PATCH", &patch, &h, &bye), &ctx, 202, b"");
        // Reconnecting is refused as the platform refuses it, and nothing changes.
        let d = s.on_request(
            &req("PATCH", &patch, &h, &answer),
            &mut Ctx { now_ms: 2_000, ..Default::default() },
            &Evidence::none(&crate::overlay::Recorded::default()),
        );
        let Decision::Answer(a) = d else { panic!("refused: {d:?}") };
        assert_eq!(a.status, 400);
        let b: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(b["code"], "bad.request");
        assert_eq!(b["message"], "The participant cannot move from disconnected to connected.");
        let v = s.view(CID, 2_000).unwrap();
        assert_eq!(v["participants"][0]["state"], "disconnected");
        assert_eq!(v["participants"][0]["flags"]["held"]["on"], false, "disconnecting released the hold");
        assert_eq!(s.take_events().len(), 3, "answer, hold, disconnect each emit an event");
    }

    #[test]
    fn a_recorded_refusal_of_that_move_is_answered_byte_for_byte() {
        let patch = format!("{CALL}/participants/{AGENT}");
        let platform = r#"{"message":"Participant is already disconnected","code":"conversation.participant.disconnected","status":400}"#;
        let s = overlay(&[
            ex(1, "GET", CALL, "", 200, &call_body("disconnected")),
            ex(2, "PATCH", &patch, r#"{"state":"connected"}"#, 400, platform),
        ]);
        let h = http::HeaderMap::new();
        let body = Bytes::from_static(br#"{"state":"connected"}"#);
        let d = s.on_request(
            &req("PATCH", &patch, &h, &body),
            &mut Ctx::default(),
            &Evidence::none(&crate::overlay::Recorded::default()),
        );
        let Decision::Answer(a) = d else { panic!("{d:?}") };
        assert_eq!((a.status, &a.body[..]), (400, platform.as_bytes()));
    }

    #[test]
    fn moves_the_recording_makes_on_its_own_are_followed() {
        let s = overlay(&[]);
        let h = http::HeaderMap::new();
        let get = Bytes::new();
        let ctx = Ctx { now_ms: 5, ..Default::default() };
        s.on_answer(&req("GET", CALL, &h, &get), &ctx, 200, call_body("alerting").as_bytes());
        // The platform connected the agent (no request of the run did): the run follows, so the
        // recorded bytes go out unchanged.
        assert_eq!(s.on_answer(&req("GET", CALL, &h, &get), &ctx, 200, call_body("connected").as_bytes()), None);
        let v = s.view(CID, 5).unwrap();
        assert_eq!(v["participants"][0]["state"], "connected");
        assert_eq!(v["history"][0]["by"], "recording");
        assert_eq!(s.take_events().len(), 1, "the platform's move is published too");
    }
}
