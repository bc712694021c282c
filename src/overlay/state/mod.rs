//! The state overlay: replayed calls move through their platform's states the way the platform
//! allows, and refuse the moves it refuses. Genesys Cloud call participants and NICE CXone contacts
//! (presets bound to the platforms' own endpoints), machines declared in `proxy.yaml` (resource,
//! triggers), and machines learned from the cassette where nothing else applies. A valid move from
//! the SDK happens when the platform (the cassette, or the overlay where the cassette has no answer)
//! accepts it; held and delayed moves wait for the admin API or the virtual clock; answers that show
//! a resource carry its current state; each move emits the platform's event (Genesys WebSocket
//! topics, NICE long polls). Plain data and virtual time: nothing here waits or touches a socket.

mod admin;
mod genesys;
mod learn;

use genesys::*;
pub(crate) use learn::{learn, learned_yaml, Learner};

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::machine::{Ask, Machine, Moved, Refusal, Refused, Session, Step};
use super::{Answer, Basis, Call, Ctx, Decision, Evidence, Ids, Overlay, ParsedBody, Platform};
use crate::cassette::index::REQ_STATE;
use crate::cassette::schema::template;
use crate::cassette::{Exchange, Index};
use crate::clock::rfc3339_ms;
use crate::config::StateConfig;
use crate::platform::genesys::{call_path as genesys_path, participant_state};
use crate::platform::nice::{action as nice_action, interaction_path as nice_path, poll_session as nice_poll};
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

/// One session the overlay follows, with what it is.
#[derive(Debug, Clone)]
struct Tracked {
    /// Its parties, their states, flags and waiting moves.
    session: Session,
    /// Which machine family it belongs to: decides its refusals, events and answers.
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
    /// Whether a move the cassette answered made it: a session replaying a recording then gets
    /// what its recording shows instead (the recording is the oracle).
    pub recorded: bool,
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

/// Everything that changes during a run, behind one lock.
#[derive(Debug, Default)]
struct Inner {
    /// Sessions by id (conversation, contact or resource id), made on first mention.
    sessions: BTreeMap<String, Tracked>,
    /// The last conversation body served per Genesys conversation (events are built from it).
    snapshots: HashMap<String, Value>,
    /// Events waiting for the proxy to deliver (WebSocket topics); see [`State::take_events`].
    emitted: Vec<Emitted>,
    /// NICE agent events waiting for the next long poll, in order; each says whether a command the
    /// cassette answered caused it (the recording's own polls then carry it, while they last).
    nice_events: VecDeque<(Value, bool)>,
    /// Set while a move the cassette answered is carried out (see `nice_events`).
    recorded_move: bool,
    /// (session, party) of moves the cassette answered that a carrier delay holds back: when they
    /// happen, they are still the recording's (see [`Emitted::recorded`]).
    recorded_delayed: std::collections::HashSet<(String, String)>,
}

/// The state overlay.
#[derive(Debug)]
pub struct State {
    /// `state:` from `proxy.yaml`: presets on, declared bindings, machines by name, learning on or off.
    cfg: StateConfig,
    /// For the correlation ids of refusal bodies.
    ids: Arc<Ids>,
    /// What the cassette shows, swapped whole on a cassette switch.
    book: RwLock<Arc<Book>>,
    /// The run's sessions and waiting events.
    inner: Mutex<Inner>,
    /// Moves on whenever a session appears or moves; see [`State::generation()`].
    generation: std::sync::atomic::AtomicU64,
    /// Events wait in `inner.emitted`.
    pending: std::sync::atomic::AtomicBool,
    /// Whether the book holds learned machines (read per answer without the book's lock).
    learned_any: std::sync::atomic::AtomicBool,
}

/// A refusal for the admin API: status, error code, message.
pub(crate) type AdminError = (u16, &'static str, String);

/// The host without a port.
fn bare(host: &str) -> &str {
    host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map(|(h, _)| h).unwrap_or(host)
}

/// The id segments of `path` under its template (the values of the `{...}` parts), in order.
fn ids_in(path: &str, tpl: &str) -> Vec<String> {
    path.split('/').zip(tpl.split('/')).filter(|(_, t)| t.starts_with('{')).map(|(p, _)| p.to_string()).collect()
}

/// Whether `method` changes a resource (`POST`, `PUT`, `PATCH`, `DELETE`).
fn is_change(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
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

    /// The run's sessions, locked (a poisoned lock is taken over).
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the cassette shows, as it stands now.
    fn book(&self) -> Arc<Book> {
        self.book.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Notes that a session appeared or moved (its deadline may have changed).
    fn bump(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// A number that changes whenever a session appears or moves: the state clock looks again then.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Forgets every session and waiting event; the book stays.
    fn reset_sessions(&self) {
        self.bump();
        *self.inner() = Inner::default();
    }

    /// The machine configured under `name`, else the `generic` preset.
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

    /// Carries out what is due by `now` in session `id` (delayed moves, timeouts) and emits its events.
    fn advance(&self, inner: &mut Inner, id: &str, now: i64) {
        let steps = match inner.sessions.get_mut(id) {
            Some(t) => t.session.advance(now),
            None => return,
        };
        if !steps.is_empty() {
            // A delayed move the cassette answered happens now: it is still the recording's.
            let recorded: Vec<bool> = steps
                .iter()
                .map(|s| s.by == "delay" && inner.recorded_delayed.remove(&(id.to_string(), s.party.clone())))
                .collect();
            inner.recorded_move = recorded.iter().all(|r| *r);
            self.emit(inner, id, &steps, now);
            inner.recorded_move = false;
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
                let recorded = inner.recorded_move;
                inner.emitted.push(Emitted { conversation: id.to_string(), topic: None, body, recorded });
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
                    let recorded = inner.recorded_move;
                    inner.nice_events.push_back((ev, recorded));
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
                        recorded: inner.recorded_move,
                    });
                    self.pending.store(true, std::sync::atomic::Ordering::Release);
                }
            }
            _ => {}
        }
    }

    /// Refuses the move `from` → `to`: the platform's recorded refusal of a move to `to` on this route
    /// when the cassette holds one, else one in the words the machine's [`Refusal`] names (400 for
    /// `Genesys` and `Nice`, 422 for `Unprocessable`).
    fn refusal(&self, machine: &Machine, call: &Call<'_>, from: &str, to: &str, what: &str) -> Answer {
        let (tpl, _) = template(call.path);
        if let Some(a) = self.book().refusals.get(&(call.host.to_string(), tpl, to.to_ascii_lowercase())) {
            return a.clone();
        }
        let detail = format!("invalid-transition:{from}->{to}");
        let msg = format!("The {what} cannot move from {from} to {to}.");
        let refuse = |p: Platform, status: u16, kind: ErrorKind<'_>| {
            crate::overlay::platform_error(&self.ids, p, status, kind, &msg, json!([]), detail.clone())
        };
        match (machine.refusal, call.platform()) {
            (Refusal::Genesys, _) => refuse(Platform::Genesys, 400, ErrorKind::BadRequest),
            (Refusal::Nice, _) => refuse(Platform::Nice, 400, ErrorKind::InvalidState),
            (Refusal::Unprocessable, p @ (Platform::Genesys | Platform::Nice)) => {
                refuse(p, 422, ErrorKind::InvalidTransition)
            }
            (Refusal::Unprocessable, Platform::Generic) => {
                let details = json!([{"from": from, "to": to}]);
                crate::overlay::platform_error(
                    &self.ids,
                    Platform::Generic,
                    422,
                    ErrorKind::InvalidTransition,
                    &msg,
                    details,
                    detail.clone(),
                )
            }
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
                let body = call.json().unwrap_or(&Value::Null);
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
                let body = call.json().unwrap_or(&Value::Null);
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
                let body = call.json().unwrap_or(&Value::Null);
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

    /// Carries out a request's move once the platform accepted it: the cassette (`recorded`), or
    /// this overlay in its place.
    fn apply(&self, a: &Asked, now: i64, recorded: bool) {
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
        let mut delayed: Vec<String> = Vec::new();
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
                        delayed.push(t.session.parties[i].id.clone());
                        tracing::info!(session = %a.session, to = %to, at = %rfc3339_ms(at), "move delayed (carrier)")
                    }
                    Ok(Moved::Same) | Err(_) => {}
                }
            }
            for (f, on) in &a.flags {
                flagged |= t.session.set_flag(i, f, *on, now);
            }
        }
        if recorded {
            for party in delayed {
                inner.recorded_delayed.insert((a.session.clone(), party));
            }
        }
        if !steps.is_empty() || flagged {
            let id = a.session.clone();
            inner.recorded_move = recorded;
            self.emit(&mut inner, &id, &steps, now);
            inner.recorded_move = false;
        }
    }

    // ---- the admin API ----
}

/// What a request asks of a session.
#[derive(Debug, Clone)]
struct Asked {
    /// The session the request names.
    session: String,
    /// The party it moves; `None` with `all` for every party.
    party: Option<String>,
    /// Every party (a whole-conversation disconnect).
    all: bool,
    /// The target state, as the request spells it; `None` when it only sets flags.
    to: Option<String>,
    /// Flags it sets (`held`, `muted`, ...).
    flags: Vec<(String, bool)>,
    /// Which machine family the route belongs to.
    kind: Kind,
}

/// Whether `hay` contains `needle` (a cheap look before parsing a body).
fn mentions(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A string or number as text (NICE sends contact ids as either).
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Overlay for State {
    /// `state`.
    fn name(&self) -> &'static str {
        "state"
    }

    /// Serves waiting NICE events to a long poll, refuses what the platform refuses (client credentials
    /// placing a Genesys call, a move the machine does not allow), and lets valid moves on to the
    /// cassette. A refusal yields to the recording while the session is where the recording had it.
    fn on_request(&self, call: &Call<'_>, ctx: &mut Ctx, ev: &Evidence<'_>) -> Decision {
        if call.platform() == Platform::Nice && call.method == "GET" {
            if let Some(sid) = nice_poll(call.path) {
                let mut inner = self.inner();
                // What a recorded command caused, the recording's next poll carries: while it has
                // one to give, those events are its own, and only callvcr's (an admin move, an
                // overlay-accepted command) are answered here.
                if ev.peek().is_some_and(|p| p.fresh) {
                    inner.nice_events.retain(|(_, recorded)| !recorded);
                }
                if !inner.nice_events.is_empty() {
                    let events: Vec<Value> = inner.nice_events.drain(..).map(|(e, _)| e).collect();
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

    /// After a success: a read of a tracked resource is served in its current state; a placed Genesys
    /// call starts being tracked; an accepted move is carried out.
    fn on_answer(&self, call: &Call<'_>, ctx: &Ctx, status: u16, answer: &ParsedBody<'_>) -> Option<Bytes> {
        if !(200..300).contains(&status) {
            return None;
        }
        let body = answer.bytes();
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
            let cid = answer.json()?.get("id")?.as_str()?;
            let mut inner = self.inner();
            if !self.materialize(&mut inner, cid, now) {
                let s = Session::empty(cid, self.machine("genesys-call"));
                inner.sessions.insert(cid.to_string(), Tracked { session: s, kind: Kind::Genesys, departed: false });
                self.bump();
            }
            return None;
        }
        if let Some(a) = self.asked(call) {
            self.apply(&a, now, true);
        }
        None
    }

    /// Accepts a valid move the cassette has no answer for, as the platform does (Genesys and NICE 202
    /// with no body, others 200 with the new state), and marks the session as departed from the
    /// recording.
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
        self.apply(&a, ctx.now_ms, false);
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

    /// Forgets every session; what was learned from the cassette stays.
    fn reset(&self) {
        self.reset_sessions();
    }
}

#[cfg(test)]
mod tests;
