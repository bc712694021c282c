//! `proxy.yaml` sections of the stateful overlays that model the platform's resources: `state`
//! (call state machines), `crud` (root collections) and `versions` (SDK-version routing). Types as
//! written, and their validation into runtime settings with located errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::machine::{Gate, Machine, Refusal, PRESETS};
use super::HostPattern;
use crate::route::{PathTemplate, VersionRange};

/// A held or delayed move as written: `{from?, to, ms}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    /// The state it leaves; absent = any.
    #[serde(default)]
    pub from: Option<String>,
    /// The state it enters.
    pub to: String,
    /// Delay in virtual milliseconds (carrier delays only).
    #[serde(default)]
    pub ms: i64,
}

/// A request that moves a declared machine: method, path template, body fields that must match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    /// HTTP method.
    pub method: String,
    /// Path template; the session id is its `{id}` parameter, else its last one.
    pub path: Spanned<String>,
    /// Top-level body fields that must equal these values.
    #[serde(default)]
    pub body: BTreeMap<String, serde_json::Value>,
    /// The state it moves to.
    pub to: String,
}

/// A machine as written: a preset's name with only the keys that change it, or a new machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMachine {
    /// Its name; a preset's name tunes that preset.
    pub name: Spanned<String>,
    /// States (a new machine needs them).
    #[serde(default)]
    pub states: Option<Vec<String>>,
    /// Start state (default: the first state).
    #[serde(default)]
    pub initial: Option<String>,
    /// Allowed moves: from a state, the states it may move to.
    #[serde(default)]
    pub transitions: Option<BTreeMap<String, Vec<String>>>,
    /// States that end a session.
    #[serde(default)]
    pub terminal: Option<Vec<String>>,
    /// Where a timeout leads.
    #[serde(default)]
    pub timeout_state: Option<String>,
    /// How long a session may stay in a state, virtual ms.
    #[serde(default)]
    pub timeouts_ms: BTreeMap<String, i64>,
    /// Carrier delays.
    #[serde(default)]
    pub delays: Vec<RawGate>,
    /// Moves held until released through the admin API.
    #[serde(default)]
    pub hold: Vec<RawGate>,
    /// Flags.
    #[serde(default)]
    pub flags: Option<Vec<String>>,
    /// `422` (default for new machines), `genesys` or `nice`: how a refused SDK move is answered.
    #[serde(default)]
    pub refusal: Option<Spanned<String>>,
    /// Path template of the resource whose `GET` answers reflect the state.
    #[serde(default)]
    pub resource: Option<Spanned<String>>,
    /// Host of the resource and triggers; absent = any configured host.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// The field of the resource that holds the state (default `state`).
    #[serde(default)]
    pub state_field: Option<String>,
    /// Requests that move it.
    #[serde(default)]
    pub triggers: Vec<RawTrigger>,
    /// WebSocket topic each move is published to (`{id}` is the session id).
    #[serde(default)]
    pub topic: Option<String>,
}

/// The `state` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawState {
    /// Platform presets bound to the platforms' own call endpoints (default both).
    pub presets: Option<Vec<Spanned<String>>>,
    /// The machine of sessions first met through the admin API (default `generic`).
    pub default: Option<Spanned<String>>,
    /// Learn machines from the cassette for resources no preset or declared machine covers.
    pub learn: Option<bool>,
    /// Declared machines and preset tunings.
    pub machines: Vec<RawMachine>,
}

/// A request that moves a declared machine.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Method, upper case.
    pub method: String,
    /// Path template.
    pub path: PathTemplate,
    /// Body fields that must match.
    pub body: Vec<(String, serde_json::Value)>,
    /// Target state.
    pub to: String,
}

/// Where a declared machine meets requests.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The machine.
    pub machine: Arc<Machine>,
    /// Host pattern; `None` = any configured host.
    pub host: Option<HostPattern>,
    /// The resource whose `GET` reflects the state.
    pub resource: Option<PathTemplate>,
    /// The state's field in that resource.
    pub state_field: String,
    /// Requests that move it.
    pub triggers: Vec<Trigger>,
    /// Topic each move is published to (`{id}` = the session id).
    pub topic: Option<String>,
}

impl Binding {
    /// Whether it covers `host`.
    pub fn covers(&self, host: &str) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(host))
    }
}

/// The state overlay's settings, validated.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Every machine by name: presets (tuned) and declared ones.
    pub machines: BTreeMap<String, Arc<Machine>>,
    /// Platform presets bound to platform endpoints.
    pub presets: Vec<String>,
    /// The machine of sessions the admin API meets first.
    pub default_machine: String,
    /// Learn machines from the cassette.
    pub learn: bool,
    /// Declared machines' bindings.
    pub bindings: Vec<Binding>,
}

impl Default for StateConfig {
    /// The `state` section's defaults, through the same validation as a written one.
    fn default() -> Self {
        state(&RawState::default(), &|_, m| m).expect("the defaults are valid")
    }
}

/// A machine's `refusal:` as written: `genesys`, `nice` or `422`.
fn refusal(text: &str) -> Option<Refusal> {
    match text {
        "422" => Some(Refusal::Unprocessable),
        "genesys" => Some(Refusal::Genesys),
        "nice" => Some(Refusal::Nice),
        _ => None,
    }
}

/// Held or delayed moves as written, as the machine keeps them.
fn gates(list: &[RawGate]) -> Vec<Gate> {
    list.iter().map(|g| Gate { from: g.from.clone(), to: g.to.clone(), ms: g.ms }).collect()
}

/// Validates the `state` section; `at` locates an error.
pub fn state<E>(raw: &RawState, at: &dyn Fn(Location, String) -> E) -> Result<StateConfig, E> {
    let mut machines: BTreeMap<String, Arc<Machine>> = BTreeMap::new();
    for p in PRESETS {
        machines.insert(p.to_string(), Arc::new(Machine::preset(p).expect("a preset")));
    }
    let mut bindings = Vec::new();
    for rm in &raw.machines {
        let name = rm.name.value.trim().to_string();
        let here = |m: String| at(rm.name.referenced, format!("state.machines `{name}`: {m}"));
        if name.is_empty() {
            return Err(here("a machine needs a name".into()));
        }
        let mut m = match Machine::preset(&name) {
            Some(p) => {
                let bound = rm.resource.is_some() || !rm.triggers.is_empty() || rm.topic.is_some();
                if rm.states.is_some() || (bound && name != "generic") {
                    return Err(here(
                        "a preset keeps its states (and the platform presets their endpoints); give only timeouts_ms, delays, hold, transitions, terminal, timeout_state or flags (or pick another name for a new machine)".into(),
                    ));
                }
                p
            }
            None => {
                let Some(states) = rm.states.clone().filter(|s| !s.is_empty()) else {
                    return Err(here(format!(
                        "a new machine lists its `states` (or use a preset's name: {})",
                        PRESETS.join(", ")
                    )));
                };
                Machine::plain(name.clone(), states.clone(), states[0].clone(), BTreeMap::new(), Refusal::Unprocessable)
            }
        };
        if let Some(i) = &rm.initial {
            m.initial = i.clone();
        }
        if let Some(t) = &rm.transitions {
            m.allowed = t.iter().map(|(f, ts)| (f.clone(), ts.iter().cloned().collect())).collect();
        }
        if let Some(t) = &rm.terminal {
            m.terminal = t.iter().cloned().collect();
        }
        if let Some(t) = &rm.timeout_state {
            m.timeout_state = Some(t.clone());
        }
        if let Some(f) = &rm.flags {
            m.flags = f.clone();
        }
        for (s, ms) in &rm.timeouts_ms {
            if *ms <= 0 {
                return Err(here(format!("timeouts_ms.{s} must be at least 1")));
            }
            m.timeouts_ms.insert(s.clone(), *ms);
        }
        m.delays.extend(gates(&rm.delays));
        m.holds.extend(gates(&rm.hold));
        if let Some(g) = rm.delays.iter().find(|g| g.ms <= 0) {
            return Err(here(format!("the delay to `{}` needs `ms` of at least 1", g.to)));
        }
        if let Some(r) = &rm.refusal {
            m.refusal = refusal(&r.value).ok_or_else(|| {
                at(r.referenced, format!("state.machines `{name}`: refusal `{}` is not 422, genesys or nice", r.value))
            })?;
        }
        // Names in transitions, timeouts and gates take the machine's spelling of its states.
        let canon = |s: &str, m: &Machine| m.canonical(s).map(str::to_string).unwrap_or_else(|| s.to_string());
        let snapshot = m.clone();
        m.initial = canon(&m.initial, &snapshot);
        m.allowed = m
            .allowed
            .iter()
            .map(|(f, ts)| (canon(f, &snapshot), ts.iter().map(|t| canon(t, &snapshot)).collect()))
            .collect();
        m.terminal = m.terminal.iter().map(|t| canon(t, &snapshot)).collect();
        m.timeout_state = m.timeout_state.as_deref().map(|t| canon(t, &snapshot));
        m.timeouts_ms = m.timeouts_ms.iter().map(|(s, ms)| (canon(s, &snapshot), *ms)).collect();
        for g in m.delays.iter_mut().chain(m.holds.iter_mut()) {
            g.to = canon(&g.to, &snapshot);
            g.from = g.from.as_deref().map(|f| canon(f, &snapshot));
        }
        if !m.timeouts_ms.is_empty() && m.timeout_state.is_none() {
            return Err(here("timeouts_ms needs a `timeout_state` to move to".into()));
        }
        m.check().map_err(here)?;
        let m = Arc::new(m);
        if Machine::preset(&name).is_none() || name == "generic" {
            let host = match &rm.host {
                Some(h) => Some(
                    HostPattern::parse(&h.value)
                        .map_err(|e| at(h.referenced, format!("state.machines `{name}` host: {e}")))?,
                ),
                None => None,
            };
            let resource = match &rm.resource {
                Some(r) => Some(
                    PathTemplate::parse(&r.value)
                        .map_err(|e| at(r.referenced, format!("state.machines `{name}` resource: {e}")))?,
                ),
                None => None,
            };
            let mut triggers = Vec::new();
            for t in &rm.triggers {
                let path = PathTemplate::parse(&t.path.value)
                    .map_err(|e| at(t.path.referenced, format!("state.machines `{name}` trigger: {e}")))?;
                let to = m.canonical(&t.to).map(str::to_string).ok_or_else(|| {
                    at(
                        t.path.referenced,
                        format!("state.machines `{name}` trigger: `{}` is not one of its states", t.to),
                    )
                })?;
                triggers.push(Trigger {
                    method: t.method.to_ascii_uppercase(),
                    path,
                    body: t.body.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    to,
                });
            }
            if resource.is_some() || !triggers.is_empty() || rm.topic.is_some() {
                bindings.push(Binding {
                    machine: m.clone(),
                    host,
                    resource,
                    state_field: rm.state_field.clone().unwrap_or_else(|| "state".into()),
                    triggers,
                    topic: rm.topic.clone(),
                });
            }
        }
        if machines.insert(name.clone(), m).is_some() && Machine::preset(&name).is_none() {
            return Err(here("declared twice".into()));
        }
    }
    let presets = match &raw.presets {
        None => vec!["genesys-call".to_string(), "nice-contact".to_string()],
        Some(list) => {
            let mut out = Vec::new();
            for p in list {
                if p.value != "genesys-call" && p.value != "nice-contact" {
                    return Err(at(
                        p.referenced,
                        format!("state.presets: `{}` is not a platform preset (genesys-call or nice-contact)", p.value),
                    ));
                }
                out.push(p.value.clone());
            }
            out
        }
    };
    let default_machine = match &raw.default {
        None => "generic".to_string(),
        Some(d) if machines.contains_key(&d.value) => d.value.clone(),
        Some(d) => {
            return Err(at(
                d.referenced,
                format!(
                    "state.default: `{}` is not a machine (known: {})",
                    d.value,
                    machines.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ))
        }
    };
    Ok(StateConfig { machines, presets, default_machine, learn: raw.learn.unwrap_or(true), bindings })
}

/// A root collection as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollection {
    /// The collection's path, e.g. `/api/v2/routing/queues`.
    pub path: Spanned<String>,
    /// Host pattern; absent = any configured host.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// The id field of its items (default `id`).
    #[serde(default)]
    pub id_field: Option<String>,
    /// Where a list answer keeps its items (default `entities`; a bare array works too).
    #[serde(default)]
    pub list_field: Option<String>,
}

/// The `crud` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCrud {
    /// Root collections kept in memory once a run changes them.
    pub collections: Option<Vec<RawCollection>>,
}

/// A root collection.
#[derive(Debug, Clone)]
pub struct Collection {
    /// Its path, without a trailing `/`.
    pub path: String,
    /// Host pattern; `None` = any configured host.
    pub host: Option<HostPattern>,
    /// Id field.
    pub id_field: String,
    /// List field.
    pub list_field: String,
}

/// Root collections when `proxy.yaml` names none.
pub const DEFAULT_COLLECTIONS: &[&str] = &["/api/v2/routing/queues", "/api/v2/users"];

/// Validates the `crud` section.
pub fn crud<E>(raw: &RawCrud, at: &dyn Fn(Location, String) -> E) -> Result<Vec<Collection>, E> {
    let Some(list) = &raw.collections else {
        return Ok(DEFAULT_COLLECTIONS
            .iter()
            .map(|p| Collection {
                path: p.to_string(),
                host: None,
                id_field: "id".into(),
                list_field: "entities".into(),
            })
            .collect());
    };
    let mut out = Vec::new();
    for c in list {
        let path = c.path.value.trim_end_matches('/').to_string();
        if !path.starts_with('/') || path.contains('{') {
            return Err(at(
                c.path.referenced,
                format!("crud.collections: `{}` is not a collection path (e.g. /api/v2/routing/queues)", c.path.value),
            ));
        }
        let host = match &c.host {
            Some(h) => Some(HostPattern::parse(&h.value).map_err(|e| at(h.referenced, format!("crud host: {e}")))?),
            None => None,
        };
        out.push(Collection {
            path,
            host,
            id_field: c.id_field.clone().unwrap_or_else(|| "id".into()),
            list_field: c.list_field.clone().unwrap_or_else(|| "entities".into()),
        });
    }
    Ok(out)
}

/// An SDK that names its version only in `User-Agent`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Regular expression over `User-Agent`; its first group is the version.
    pub pattern: Spanned<String>,
    /// The SDK's name in `versions.routes` (`sdk_name`).
    pub name: String,
}

/// A versioned route as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVersionRoute {
    /// Method; absent = any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path regular expression.
    pub path: Spanned<String>,
    /// Host pattern; absent = any.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// Version range of the SDKs it applies to.
    pub sdk: Spanned<String>,
    /// Only SDKs of this name (`python`, `javascript`, `java`, `dotnet`, or a `user_agents` name).
    #[serde(default)]
    pub sdk_name: Option<String>,
    /// Deprecated (and removed) for that range: 410 Gone naming the replacement.
    #[serde(default)]
    pub deprecated: bool,
    /// The path to use instead.
    #[serde(default)]
    pub replacement: Option<String>,
}

/// The `versions` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawVersions {
    /// SDKs recognised by `User-Agent`.
    pub user_agents: Vec<RawAgent>,
    /// Versioned routes, first match applies.
    pub routes: Vec<RawVersionRoute>,
}

/// An SDK recognised by `User-Agent`.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Pattern; group 1 is the version.
    pub pattern: regex::Regex,
    /// Its name.
    pub name: String,
}

/// A versioned route.
#[derive(Debug, Clone)]
pub struct VersionRoute {
    /// Method, upper case; `None` = any.
    pub method: Option<String>,
    /// Path pattern.
    pub path: regex::Regex,
    /// Host pattern.
    pub host: Option<HostPattern>,
    /// Versions it applies to.
    pub sdk: VersionRange,
    /// SDK name it applies to.
    pub sdk_name: Option<String>,
    /// Deprecated for that range.
    pub deprecated: bool,
    /// Replacement path.
    pub replacement: Option<String>,
}

/// The versions overlay's settings.
#[derive(Debug, Clone, Default)]
pub struct VersionsConfig {
    /// SDKs recognised by `User-Agent`.
    pub agents: Vec<Agent>,
    /// Routes.
    pub routes: Vec<VersionRoute>,
}

/// Validates the `versions` section.
pub fn versions<E>(raw: &RawVersions, at: &dyn Fn(Location, String) -> E) -> Result<VersionsConfig, E> {
    let mut out = VersionsConfig::default();
    for a in &raw.user_agents {
        let pattern = regex::Regex::new(&a.pattern.value).map_err(|e| {
            at(
                a.pattern.referenced,
                format!("versions.user_agents `{}` is not a regular expression: {e}", a.pattern.value),
            )
        })?;
        if pattern.captures_len() < 2 {
            return Err(at(
                a.pattern.referenced,
                format!(
                    "versions.user_agents `{}` needs a group around the version, e.g. mysdk/([0-9.]+)",
                    a.pattern.value
                ),
            ));
        }
        out.agents.push(Agent { pattern, name: a.name.clone() });
    }
    for r in &raw.routes {
        let path = regex::Regex::new(&r.path.value).map_err(|e| {
            at(r.path.referenced, format!("versions.routes path `{}` is not a regular expression: {e}", r.path.value))
        })?;
        let sdk =
            VersionRange::parse(&r.sdk.value).map_err(|e| at(r.sdk.referenced, format!("versions.routes sdk: {e}")))?;
        let host = match &r.host {
            Some(h) => Some(HostPattern::parse(&h.value).map_err(|e| at(h.referenced, format!("versions host: {e}")))?),
            None => None,
        };
        if !r.deprecated {
            return Err(at(
                r.path.referenced,
                "versions.routes: a route says what happens for its range: `deprecated: true` (410 Gone), with a `replacement`".into(),
            ));
        }
        out.routes.push(VersionRoute {
            method: r.method.as_ref().map(|m| m.to_ascii_uppercase()),
            path,
            host,
            sdk,
            sdk_name: r.sdk_name.as_ref().map(|s| s.to_ascii_lowercase()),
            deprecated: r.deprecated,
            replacement: r.replacement.clone(),
        });
    }
    Ok(out)
}
