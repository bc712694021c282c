//! State machines as configured: what a machine allows, from the shipped presets or declared in
//! `proxy.yaml` (states, moves, terminal states, held and delayed moves). A specification only: the
//! state overlay runs sessions through it.

use std::collections::{BTreeMap, BTreeSet};

use crate::platform::CallPreset;

/// How a move the machine does not allow is refused when an SDK asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400 in the Genesys Cloud error shape.
    Genesys,
    /// 400 in the NICE CXone error shape.
    Nice,
    /// 422, the seed design's rule for a generic call.
    Unprocessable,
}

/// A transition that does not happen at once: held until released, or delayed on the virtual clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// The state it leaves (`None` = any).
    pub from: Option<String>,
    /// The state it enters.
    pub to: String,
    /// Delay in virtual milliseconds (a carrier delay); unused for holds.
    pub ms: i64,
}

impl Gate {
    /// Whether the gate applies to a move from `from` to `to`.
    pub fn applies(&self, from: &str, to: &str) -> bool {
        self.to.eq_ignore_ascii_case(to) && self.from.as_deref().is_none_or(|f| f.eq_ignore_ascii_case(from))
    }
}

/// A state machine: its states, the moves it allows, and its timing rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Its name (`genesys-call`, `nice-contact`, `generic`, or a declared or learned one).
    pub name: String,
    /// States, in the order they are listed.
    pub states: Vec<String>,
    /// The state a new session starts in.
    pub initial: String,
    /// Allowed moves: from → to.
    pub allowed: BTreeMap<String, BTreeSet<String>>,
    /// States that end a session: entering one releases what it holds (flags, pending moves).
    pub terminal: BTreeSet<String>,
    /// Where a timeout leads.
    pub timeout_state: Option<String>,
    /// How long a session may stay in a state (virtual ms) before it times out.
    pub timeouts_ms: BTreeMap<String, i64>,
    /// Carrier delays.
    pub delays: Vec<Gate>,
    /// Moves held until `release`.
    pub holds: Vec<Gate>,
    /// Flags a party can carry beside its state (`held`, `muted`, `recording`, ...).
    pub flags: Vec<String>,
    /// How a refused SDK move is answered.
    pub refusal: Refusal,
}

/// A set of owned states, for writing presets briefly.
fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Allowed moves from (state, targets) pairs, for writing presets briefly.
fn moves(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    pairs.iter().map(|(f, t)| (f.to_string(), set(t))).collect()
}

/// The seed design's generic call, for APIs of no known platform: refused moves answer 422.
const SEED_CALL: CallPreset = CallPreset {
    name: "generic",
    states: &["INIT", "RINGING", "ANSWERED", "HOLD", "COMPLETE", "FAILED", "TIMEOUT"],
    initial: "INIT",
    moves: &[
        ("INIT", &["RINGING", "FAILED"]),
        ("RINGING", &["ANSWERED", "FAILED", "TIMEOUT"]),
        ("ANSWERED", &["HOLD", "COMPLETE", "FAILED"]),
        ("HOLD", &["ANSWERED", "COMPLETE", "FAILED"]),
    ],
    terminal: &["COMPLETE", "FAILED", "TIMEOUT"],
    timeout_state: "TIMEOUT",
    flags: &[],
};

/// The names of the shipped presets.
pub const PRESETS: &[&str] = &["genesys-call", "nice-contact", "generic"];

impl Machine {
    /// A shipped preset by name.
    pub fn preset(name: &str) -> Option<Machine> {
        match name {
            "genesys-call" => Some(Machine::from_preset(&crate::platform::genesys::CALL, Refusal::Genesys)),
            "nice-contact" => Some(Machine::from_preset(&crate::platform::nice::CONTACT, Refusal::Nice)),
            "generic" => Some(Machine::from_preset(&SEED_CALL, Refusal::Unprocessable)),
            _ => None,
        }
    }

    /// A platform's preset compiled: its states, moves, terminal states and flags, no timers.
    fn from_preset(p: &CallPreset, refusal: Refusal) -> Machine {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Machine {
            name: p.name.into(),
            states: list(p.states),
            initial: p.initial.into(),
            allowed: moves(p.moves),
            terminal: set(p.terminal),
            timeout_state: Some(p.timeout_state.into()),
            timeouts_ms: BTreeMap::new(),
            delays: Vec::new(),
            holds: Vec::new(),
            flags: list(p.flags),
            refusal,
        }
    }

    /// A machine with these states and moves, and no terminal states, timing rules or flags.
    pub fn plain(
        name: String,
        states: Vec<String>,
        initial: String,
        allowed: BTreeMap<String, BTreeSet<String>>,
        refusal: Refusal,
    ) -> Machine {
        Machine {
            name,
            states,
            initial,
            allowed,
            terminal: BTreeSet::new(),
            timeout_state: None,
            timeouts_ms: BTreeMap::new(),
            delays: Vec::new(),
            holds: Vec::new(),
            flags: Vec::new(),
            refusal,
        }
    }

    /// The machine's spelling of `state` (states match without regard to case), if it has it.
    pub fn canonical(&self, state: &str) -> Option<&str> {
        self.states.iter().find(|s| s.eq_ignore_ascii_case(state)).map(String::as_str)
    }

    /// Whether the machine allows `from` → `to`.
    pub fn allows(&self, from: &str, to: &str) -> bool {
        self.allowed.get(from).is_some_and(|t| t.contains(to))
    }

    /// Whether `state` ends a session.
    pub fn is_terminal(&self, state: &str) -> bool {
        self.terminal.contains(state)
    }

    /// Checks the machine is coherent: every state named is listed, the initial state exists.
    pub fn check(&self) -> Result<(), String> {
        let known = |s: &str, what: &str| -> Result<(), String> {
            if self.canonical(s).is_some() {
                Ok(())
            } else {
                Err(format!(
                    "machine `{}`: {what} `{s}` is not one of its states ({})",
                    self.name,
                    self.states.join(", ")
                ))
            }
        };
        if self.states.is_empty() {
            return Err(format!("machine `{}` has no states", self.name));
        }
        known(&self.initial, "the initial state")?;
        for (f, ts) in &self.allowed {
            known(f, "transition source")?;
            for t in ts {
                known(t, "transition target")?;
            }
        }
        for t in &self.terminal {
            known(t, "terminal state")?;
        }
        if let Some(t) = &self.timeout_state {
            known(t, "timeout state")?;
        }
        for s in self.timeouts_ms.keys() {
            known(s, "timeout for state")?;
        }
        for g in self.delays.iter().chain(&self.holds) {
            known(&g.to, "delayed or held target")?;
            if let Some(f) = &g.from {
                known(f, "delayed or held source")?;
            }
        }
        Ok(())
    }
}
