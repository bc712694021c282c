//! Learning state machines from a cassette: which states each kind of resource passes through,
//! in which order, and what the overlay may rest a refusal on.

use super::*;

impl State {
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

    /// Learned machines, for the admin API and the CLI.
    pub fn learned(&self) -> Vec<Learned> {
        let mut v: Vec<Learned> = self.book().learned.values().cloned().collect();
        v.sort_by(|a, b| (&a.host, &a.template).cmp(&(&b.host, &b.template)));
        v
    }

    /// What a learned machine's refusal rests on: the recordings it was learned from.
    pub(super) fn learned_evidence(&self, id: &str) -> Option<String> {
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
    pub(super) fn refusal_stands(&self, id: &str) -> bool {
        self.inner().sessions.get(id).is_some_and(|t| t.departed || matches!(t.kind, Kind::Learned(..)))
    }
}

/// What has been seen so far of one resource field (host, template, field), one exchange at a time.
#[derive(Default)]
pub(super) struct Acc {
    /// States in the order first seen: the machine's state list.
    order: Vec<String>,
    /// A recorded path of the resource, to name it in messages.
    sample: String,
    /// Each instance's last state seen, by id: the next one seen is a move from it.
    last: HashMap<String, String>,
    /// How many instances were first seen in each state: the most common is the initial state.
    firsts: BTreeMap<String, usize>,
    /// Moves seen, (from, to), with how often: the only moves the learned machine allows.
    seen: BTreeMap<(String, String), usize>,
}

impl Acc {
    /// Instance `id` seen in `state`: a first sighting, a move, or the same state again (ignored).
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
pub(super) struct Part {
    /// Host, without port.
    host: String,
    /// Path template of the resource (`/api/v2/widgets/{widgetId}`).
    template: String,
    /// The state field: `state`, or `participants[].state` for nested parties.
    field: String,
    /// [`Acc`]'s `order`.
    order: Vec<String>,
    /// [`Acc`]'s `sample`.
    sample: String,
    /// How many distinct instances were seen.
    instances: usize,
    /// [`Acc`]'s `firsts`, as a list (JSON has no tuple keys).
    firsts: Vec<(String, usize)>,
    /// [`Acc`]'s `seen`, as (from, to, count).
    seen: Vec<(String, String, usize)>,
}

/// Learns machines from exchanges seen one by one in recorded order (see [`learn`]); as an
/// [`Analysis`](crate::cassette::replayfile::Analysis) its result is kept in a cassette's replay
/// file, so replay need not read every exchange again.
#[derive(Default)]
pub(crate) struct Learner {
    /// Accumulators by (host, template, field).
    accs: BTreeMap<(String, String, String), Acc>,
}

/// The name a [`Learner`]'s result is kept under.
pub(crate) const LEARNED: &str = "state.learned";

impl Learner {
    /// Sees one exchange (they must come in recorded order).
    pub(crate) fn observe(&mut self, e: &Exchange) {
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

    /// What was learned, as the replay file keeps it (fields with no state seen left out).
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
    /// [`LEARNED`].
    fn name(&self) -> &'static str {
        LEARNED
    }

    /// See [`Learner::observe`].
    fn observe(&mut self, e: &Exchange) {
        Learner::observe(self, e)
    }

    /// The [`Part`]s, as JSON.
    fn finish(self: Box<Self>) -> Value {
        serde_json::to_value(self.parts()).unwrap_or(Value::Null)
    }
}

/// Machines learned from a cassette: for each resource (host, path template with an id) whose
/// answers carry a string `state`, the states seen and the moves seen between consecutive answers
/// (and accepted requests that set `state`) of the same instance; nested parties (`participants`
/// with `id` and `state`) are learned as `participants[].state`.
pub(crate) fn learn<'a>(exchanges: impl IntoIterator<Item = &'a Exchange>) -> Vec<Learned> {
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
pub(crate) fn learned_of(index: &crate::cassette::Index) -> Vec<Learned> {
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

/// Machines from what was learned (fresh, or read back from a replay file): the states in order
/// first seen, the most common first state as initial (ties to the earlier seen), only the moves
/// seen allowed, refusals in the host's platform's words.
pub(super) fn machines(parts: Vec<Part>) -> Vec<Learned> {
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
                Platform::Generic => Refusal::Unprocessable,
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
pub(crate) fn learned_yaml(list: &[Learned]) -> String {
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
