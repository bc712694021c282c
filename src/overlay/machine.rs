//! Sessions moving through a state machine (its definition and presets are in `config::machine`),
//! with flags, held and delayed (carrier) transitions, and timeouts. Plain data: virtual time comes
//! in as an argument, nothing here waits or touches a socket.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

pub(crate) use crate::config::machine::{Machine, Refusal};

/// A flag's value and since when (virtual ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flag {
    /// On or off.
    pub on: bool,
    /// When it last changed.
    pub since_ms: i64,
}

/// A move that was asked for and has not happened yet.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    /// The state it enters.
    pub to: String,
    /// When it happens on its own (a carrier delay); `None` = held until released.
    pub due_ms: Option<i64>,
    /// Who asked (`sdk`, `admin`).
    pub by: &'static str,
    /// What the asker attached.
    pub metadata: Value,
}

/// One participant (Genesys) or the contact itself (one-party machines).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Party {
    /// Its id (the participant id; for one-party sessions, the session id).
    pub id: String,
    /// Its purpose, where the platform names one (`customer`, `agent`, ...).
    pub purpose: String,
    /// Current state.
    pub state: String,
    /// When it entered that state.
    pub entered_ms: i64,
    /// Flags by name.
    pub flags: BTreeMap<String, Flag>,
    /// A held or delayed move.
    pub pending: Option<Pending>,
    /// The state the recording last showed for it (to replay platform-driven moves).
    pub last_recorded: Option<String>,
    /// Why it was disconnected, when a timeout did it.
    pub timed_out: bool,
}

/// One move that happened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    /// The party that moved.
    pub party: String,
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// Virtual time it happened.
    pub at_ms: i64,
    /// What moved it: `sdk`, `admin`, `release`, `delay`, `timeout`, `recording`, `trigger`.
    pub by: &'static str,
    /// What the asker attached.
    pub metadata: Value,
}

/// Why a move was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The machine does not allow it.
    NotAllowed {
        /// Current state.
        from: String,
        /// Asked-for state.
        to: String,
    },
    /// `to` is not a state of the machine.
    UnknownState(String),
    /// The asker's `from` is not the current state.
    WrongFrom {
        /// Current state.
        current: String,
        /// What the asker thought.
        expected: String,
    },
    /// Another move is already waiting.
    Busy(String),
    /// No such party.
    NoParty(String),
}

impl std::fmt::Display for Refused {
    /// The refusal in words, as logs and admin answers show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NotAllowed { from, to } => write!(f, "the move from {from} to {to} is not allowed"),
            Refused::UnknownState(s) => write!(f, "`{s}` is not a state of this machine"),
            Refused::WrongFrom { current, expected } => {
                write!(f, "the state is {current}, not {expected}")
            }
            Refused::Busy(to) => write!(f, "a move to {to} is already waiting (held or delayed)"),
            Refused::NoParty(p) => write!(f, "no participant `{p}` in this session"),
        }
    }
}

/// What came of asking for a move.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Moved {
    /// It happened.
    Now(Step),
    /// It waits for `release`.
    Held(String),
    /// It happens at this virtual time.
    Delayed(String, i64),
    /// Already there: nothing to do.
    Same,
}

/// A move asked for.
#[derive(Debug, Clone)]
pub(crate) struct Ask<'a> {
    /// The state to enter.
    pub to: &'a str,
    /// The asker's idea of the current state (admin calls check it).
    pub expected: Option<&'a str>,
    /// Who asks: `sdk`, `admin`, `trigger`, `recording`.
    pub by: &'static str,
    /// What the asker attaches.
    pub metadata: Value,
    /// Whether the machine's holds and delays apply.
    pub gated: bool,
}

impl<'a> Ask<'a> {
    /// A gated move to `to` asked by `by`, with no expectation and no metadata.
    pub(crate) fn to(to: &'a str, by: &'static str) -> Ask<'a> {
        Ask { to, expected: None, by, metadata: Value::Null, gated: true }
    }

    #[cfg(test)] // only the tests read it
    /// With the asker's idea of the current state.
    pub(crate) fn from(mut self, expected: Option<&'a str>) -> Ask<'a> {
        self.expected = expected;
        self
    }

    /// Not held or delayed.
    pub(crate) fn ungated(mut self) -> Ask<'a> {
        self.gated = false;
        self
    }
}

/// A call, conversation or contact moving through one machine.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// Its id (Genesys conversation id, NICE contact id, or any id a test picks).
    pub id: String,
    /// Its machine.
    pub machine: Arc<Machine>,
    /// Its parties, in the order first seen.
    pub parties: Vec<Party>,
    /// Every move, in order.
    pub history: Vec<Step>,
}

impl Session {
    /// A session with no party yet (Genesys conversations learn theirs from the platform's answers).
    pub(crate) fn empty(id: &str, machine: Arc<Machine>) -> Session {
        Session { id: id.to_string(), machine, parties: Vec::new(), history: Vec::new() }
    }

    /// A one-party session in the machine's initial state.
    pub(crate) fn new(id: &str, machine: Arc<Machine>, now_ms: i64) -> Session {
        let mut s = Session::empty(id, machine);
        let initial = s.machine.initial.clone();
        s.add_party(id, "", &initial, now_ms);
        s
    }

    /// Adds a party in `state` (spelled as the machine spells it when it knows it).
    pub(crate) fn add_party(&mut self, id: &str, purpose: &str, state: &str, now_ms: i64) -> usize {
        let state = self.machine.canonical(state).unwrap_or(state).to_string();
        let flags = self.machine.flags.iter().map(|f| (f.clone(), Flag { on: false, since_ms: now_ms })).collect();
        self.parties.push(Party {
            id: id.to_string(),
            purpose: purpose.to_string(),
            state,
            entered_ms: now_ms,
            flags,
            pending: None,
            last_recorded: None,
            timed_out: false,
        });
        self.parties.len() - 1
    }

    /// The index of party `id`.
    pub(crate) fn party(&self, id: &str) -> Option<usize> {
        self.parties.iter().position(|p| p.id == id)
    }

    /// The party admin calls act on when none is named: the customer, else the first.
    pub(crate) fn primary(&self) -> Option<usize> {
        self.parties.iter().position(|p| p.purpose == "customer").or(if self.parties.is_empty() {
            None
        } else {
            Some(0)
        })
    }

    /// Resolves a party by id, or the primary one.
    pub(crate) fn resolve(&self, party: Option<&str>) -> Result<usize, Refused> {
        match party {
            Some(p) => self.party(p).ok_or_else(|| Refused::NoParty(p.to_string())),
            None => self.primary().ok_or_else(|| Refused::NoParty("(none yet)".into())),
        }
    }

    /// Asks for party `i` to make the move `ask` describes at `now_ms`.
    pub(crate) fn request(&mut self, i: usize, ask: Ask<'_>, now_ms: i64) -> Result<Moved, Refused> {
        let Ask { to, expected, by, metadata, gated } = ask;
        let m = self.machine.clone();
        let Some(to) = m.canonical(to).map(str::to_string) else {
            return Err(Refused::UnknownState(to.to_string()));
        };
        let p = &self.parties[i];
        if let Some(e) = expected {
            if !e.eq_ignore_ascii_case(&p.state) {
                return Err(Refused::WrongFrom { current: p.state.clone(), expected: e.to_string() });
            }
        }
        if let Some(pending) = &p.pending {
            return Err(Refused::Busy(pending.to.clone()));
        }
        if p.state == to {
            // Ending what has ended (disconnecting a disconnected participant) is refused; any other
            // move to where the party already is changes nothing.
            if m.is_terminal(&to) {
                return Err(Refused::NotAllowed { from: p.state.clone(), to });
            }
            return Ok(Moved::Same);
        }
        if !m.allows(&p.state, &to) {
            return Err(Refused::NotAllowed { from: p.state.clone(), to });
        }
        if gated {
            if m.holds.iter().any(|g| g.applies(&p.state, &to)) {
                self.parties[i].pending = Some(Pending { to: to.clone(), due_ms: None, by, metadata });
                return Ok(Moved::Held(to));
            }
            if let Some(g) = m.delays.iter().find(|g| g.applies(&p.state, &to)).filter(|g| g.ms > 0) {
                let due = now_ms + g.ms;
                self.parties[i].pending = Some(Pending { to: to.clone(), due_ms: Some(due), by, metadata });
                return Ok(Moved::Delayed(to, due));
            }
        }
        Ok(Moved::Now(self.enter(i, &to, now_ms, by, metadata)))
    }

    /// Moves party `i` into `to` now, without checks; entering a terminal state releases what the
    /// party holds (flags off, any pending move dropped).
    fn enter(&mut self, i: usize, to: &str, at_ms: i64, by: &'static str, metadata: Value) -> Step {
        let terminal = self.machine.is_terminal(to);
        let p = &mut self.parties[i];
        let step = Step { party: p.id.clone(), from: p.state.clone(), to: to.to_string(), at_ms, by, metadata };
        p.state = to.to_string();
        p.entered_ms = at_ms;
        if terminal {
            p.pending = None;
            for f in p.flags.values_mut().filter(|f| f.on) {
                *f = Flag { on: false, since_ms: at_ms };
            }
        }
        self.history.push(step.clone());
        step
    }

    /// Releases party `i`'s held move.
    pub(crate) fn release(&mut self, i: usize, now_ms: i64) -> Option<Step> {
        let p = &mut self.parties[i];
        match &p.pending {
            Some(Pending { due_ms: None, .. }) => {
                let pending = p.pending.take()?;
                Some(self.enter(i, &pending.to, now_ms, "release", pending.metadata))
            }
            _ => None,
        }
    }

    /// Sets a flag; `true` when it changed.
    pub(crate) fn set_flag(&mut self, i: usize, flag: &str, on: bool, now_ms: i64) -> bool {
        let f = self.parties[i].flags.entry(flag.to_string()).or_insert(Flag { on: false, since_ms: now_ms });
        if f.on == on {
            return false;
        }
        *f = Flag { on, since_ms: now_ms };
        true
    }

    /// When the next thing happens on its own (a delayed move, a timeout), if anything will.
    pub(crate) fn next_deadline(&self) -> Option<i64> {
        self.parties.iter().filter_map(|p| self.deadline(p)).min()
    }

    /// When party `p` next moves on its own: its delayed move falling due, or the timeout of its state
    /// (only when the machine names a state to time out to, and never in a terminal state).
    fn deadline(&self, p: &Party) -> Option<i64> {
        let delayed = p.pending.as_ref().and_then(|x| x.due_ms);
        let timeout = (!self.machine.is_terminal(&p.state))
            .then(|| self.machine.timeouts_ms.get(&p.state).map(|ms| p.entered_ms + ms))
            .flatten()
            .filter(|_| self.machine.timeout_state.is_some());
        match (delayed, timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Carries out everything due by `now_ms`, in time order: delayed moves, then timeouts (a
    /// timeout also releases the party's resources). Returns the steps taken.
    pub(crate) fn advance(&mut self, now_ms: i64) -> Vec<Step> {
        let mut out = Vec::new();
        loop {
            let due = self
                .parties
                .iter()
                .enumerate()
                .filter_map(|(i, p)| self.deadline(p).filter(|d| *d <= now_ms).map(|d| (d, i)))
                .min();
            let Some((at, i)) = due else { break };
            if self.parties[i].pending.as_ref().is_some_and(|x| x.due_ms == Some(at)) {
                let pending = self.parties[i].pending.take().expect("just seen");
                out.push(self.enter(i, &pending.to, at, "delay", pending.metadata));
                continue;
            }
            let to = self.machine.timeout_state.clone().expect("deadline implies a timeout state");
            self.parties[i].pending = None;
            self.parties[i].timed_out = true;
            let from = self.parties[i].state.clone();
            let step = self.enter(i, &to, at, "timeout", json!({"after_ms": at - self.parties[i].entered_ms}));
            // Resources go with it, whatever the timeout state is.
            for f in self.parties[i].flags.values_mut().filter(|f| f.on) {
                *f = Flag { on: false, since_ms: at };
            }
            out.push(Step { from, ..step });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::machine::{Gate, PRESETS};

    fn generic() -> Arc<Machine> {
        Arc::new(Machine::preset("generic").unwrap())
    }

    #[test]
    fn presets_are_coherent() {
        for name in PRESETS {
            Machine::preset(name).unwrap().check().unwrap();
        }
        let mut bad = Machine::preset("generic").unwrap();
        bad.allowed.entry("INIT".into()).or_default().insert("NOWHERE".into());
        assert!(bad.check().unwrap_err().contains("`NOWHERE` is not one of its states"));
    }

    #[test]
    fn the_generic_call_moves_only_as_allowed_and_a_refusal_changes_nothing() {
        let mut s = Session::new("c-1", generic(), 0);
        assert_eq!(
            s.request(0, Ask::to("COMPLETE", "sdk"), 1),
            Err(Refused::NotAllowed { from: "INIT".into(), to: "COMPLETE".into() })
        );
        assert_eq!(s.parties[0].state, "INIT");
        assert!(s.history.is_empty());
        assert!(matches!(s.request(0, Ask::to("ringing", "admin").from(Some("init")), 2), Ok(Moved::Now(_))));
        assert_eq!(
            s.request(0, Ask::to("ANSWERED", "admin").from(Some("INIT")), 3),
            Err(Refused::WrongFrom { current: "RINGING".into(), expected: "INIT".into() })
        );
        assert_eq!(s.request(0, Ask::to("BOGUS", "admin"), 3), Err(Refused::UnknownState("BOGUS".into())));
        assert_eq!(s.request(0, Ask::to("RINGING", "sdk"), 3), Ok(Moved::Same));
        assert_eq!(s.history.len(), 1);
        assert_eq!((s.history[0].from.as_str(), s.history[0].to.as_str(), s.history[0].at_ms), ("INIT", "RINGING", 2));
    }

    #[test]
    fn held_moves_wait_for_release_and_delayed_ones_for_the_clock() {
        let mut m = Machine::preset("generic").unwrap();
        m.holds.push(Gate { from: Some("RINGING".into()), to: "ANSWERED".into(), ms: 0 });
        m.delays.push(Gate { from: None, to: "RINGING".into(), ms: 2_000 });
        let mut s = Session::new("c", Arc::new(m), 0);
        assert_eq!(s.request(0, Ask::to("RINGING", "admin"), 100), Ok(Moved::Delayed("RINGING".into(), 2_100)));
        assert_eq!(s.next_deadline(), Some(2_100));
        assert!(s.advance(2_099).is_empty(), "one millisecond short");
        assert_eq!(s.request(0, Ask::to("FAILED", "admin"), 2_099), Err(Refused::Busy("RINGING".into())));
        let steps = s.advance(5_000);
        assert_eq!((steps.len(), steps[0].at_ms, steps[0].by), (1, 2_100, "delay"), "happens at its due time");
        assert_eq!(s.request(0, Ask::to("ANSWERED", "sdk"), 6_000), Ok(Moved::Held("ANSWERED".into())));
        assert_eq!(s.parties[0].state, "RINGING");
        assert_eq!(s.advance(1_000_000), vec![], "a held move does not happen on its own");
        let step = s.release(0, 7_000).unwrap();
        assert_eq!((step.to.as_str(), step.by), ("ANSWERED", "release"));
        assert_eq!(s.release(0, 7_001), None, "nothing left to release");
        // Ungated (admin with force) goes straight through.
        let mut m = Machine::preset("generic").unwrap();
        m.holds.push(Gate { from: None, to: "RINGING".into(), ms: 0 });
        let mut s = Session::new("d", Arc::new(m), 0);
        assert!(matches!(s.request(0, Ask::to("RINGING", "admin").ungated(), 1), Ok(Moved::Now(_))));
    }

    #[test]
    fn a_call_left_ringing_past_its_timeout_times_out_and_releases_what_it_held() {
        let mut m = Machine::preset("genesys-call").unwrap();
        m.timeouts_ms.insert("alerting".into(), 30_000);
        let mut s = Session::empty("conv", Arc::new(m));
        s.add_party("p-agent", "agent", "alerting", 1_000);
        s.add_party("p-cust", "customer", "connected", 1_000);
        assert!(s.set_flag(1, "held", true, 1_500));
        assert!(!s.set_flag(1, "held", true, 1_600), "no change");
        assert_eq!(s.next_deadline(), Some(31_000));
        assert!(s.advance(30_999).is_empty());
        let steps = s.advance(40_000);
        assert_eq!(steps.len(), 1);
        assert_eq!(
            (steps[0].party.as_str(), steps[0].from.as_str(), steps[0].to.as_str()),
            ("p-agent", "alerting", "disconnected")
        );
        assert_eq!((steps[0].at_ms, steps[0].by), (31_000, "timeout"));
        assert!(s.parties[0].timed_out);
        assert_eq!(s.next_deadline(), None, "a terminal state has no timeout");
        // Disconnecting the customer releases its hold.
        assert!(matches!(s.request(1, Ask::to("disconnected", "sdk"), 50_000), Ok(Moved::Now(_))));
        assert_eq!(s.parties[1].flags["held"], Flag { on: false, since_ms: 50_000 });
        // Nor disconnected again, nor reconnected.
        assert_eq!(
            s.request(1, Ask::to("disconnected", "sdk"), 50_500),
            Err(Refused::NotAllowed { from: "disconnected".into(), to: "disconnected".into() })
        );
        assert_eq!(
            s.request(1, Ask::to("connected", "sdk"), 51_000),
            Err(Refused::NotAllowed { from: "disconnected".into(), to: "connected".into() })
        );
        assert_eq!(s.primary(), Some(1), "the customer is the primary party");
    }
}
