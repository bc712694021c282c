//! The state overlay's admin operations: sessions listed and viewed, moved by hand, held moves
//! released, machines described.

use super::*;

impl State {
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
        let held = |p: &crate::overlay::machine::Party| p.pending.as_ref().is_some_and(|x| x.due_ms.is_none());
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

/// The moves party `i`'s state allows, for a refusal message (`nothing` when none).
pub(super) fn allowed_from(s: &Session, i: usize) -> String {
    let moves: Vec<&String> = s.machine.allowed.get(&s.parties[i].state).into_iter().flatten().collect();
    if moves.is_empty() {
        "nothing".into()
    } else {
        moves.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// A machine as the admin API describes it.
pub(super) fn machine_json(m: &Machine) -> Value {
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

/// A session as the admin API shows it: its primary party's state, flags and waiting move, the
/// history, and every participant for a Genesys call or a session of several parties.
pub(super) fn view(t: &Tracked) -> Value {
    let s = &t.session;
    let primary = s.primary();
    let party_json = |p: &crate::overlay::machine::Party| {
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
