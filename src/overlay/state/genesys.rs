//! The Genesys Cloud call preset: conversation bodies served as the session stands, participant
//! refusals in the platform's words, and the rule that client credentials cannot place calls.

use super::*;

impl State {
    /// A Genesys Cloud 400 (`bad.request`): its call rules' refusals.
    pub(super) fn genesys_bad_request(&self, message: &str, detail: &str) -> Answer {
        crate::overlay::platform_error(
            &self.ids,
            Platform::Genesys,
            400,
            ErrorKind::BadRequest,
            message,
            json!([]),
            detail,
        )
    }

    /// The Genesys refusal of a participant move.
    pub(super) fn genesys_refusal(&self, host: &str, path: &str, from: &str, to: &str, what: &str) -> Answer {
        let (tpl, _) = template(path);
        if let Some(a) = self.book().refusals.get(&(host.to_string(), tpl, to.to_ascii_lowercase())) {
            return a.clone();
        }
        self.genesys_bad_request(
            &format!("The {what} cannot move from {from} to {to}."),
            &format!("invalid-transition:{from}->{to}"),
        )
    }

    /// A Genesys conversation body as served: adopts moves the recording shows (platform-driven),
    /// then carries the session's current states and flags.
    /// A recorded call as the run has it: the recorded answer as it is while the run follows the
    /// recording, the session's own state once it left it (`repeated`: the answer is a recording
    /// served before).
    pub(super) fn serve_genesys(&self, cid: &str, body: &[u8], now: i64, repeated: bool) -> Option<Bytes> {
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
    pub(super) fn serve_resource(
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

    /// Genesys: a client-credentials token cannot place a call or answer one; the platform answers
    /// 400 (checked only when the auth overlay recognised the token).
    pub(super) fn needs_user(&self, call: &Call<'_>, ctx: &Ctx) -> Option<Answer> {
        let principal = ctx.principal.as_ref().filter(|p| !p.user)?;
        if call.platform() != Platform::Genesys || !self.cfg.presets.iter().any(|p| p == "genesys-call") {
            return None;
        }
        let places = call.method == "POST" && call.path.trim_end_matches('/') == "/api/v2/conversations/calls";
        let answers = call.method == "PATCH"
            && matches!(genesys_path(call.path), Some((_, Some(_), _)))
            && call.json().is_some_and(|b| {
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
}

/// Parties of a Genesys conversation from a recorded body, each in its recorded state.
pub(super) fn seed_parties(s: &mut Session, body: &Value, now: i64) {
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
pub(super) fn follow_recording(s: &mut Session, pid: &str, purpose: &str, recorded: &str, now: i64) -> Option<Step> {
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
pub(super) fn apply_genesys(v: &mut Value, s: &Session, _now: i64) {
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
