//! The versions overlay: routes tagged with SDK version ranges. The SDK and its version come from
//! the request: Genesys SDKs send `purecloud-sdk: <version>` beside `User-Agent: PureCloud
//! SDK/<language>`; others are recognised by `User-Agent` patterns in `proxy.yaml`. A route marked
//! deprecated for a range answers 410 Gone, naming the path to use instead. (Choosing among
//! recordings made by several SDK versions is the replay index's part.) Plain data.

use serde_json::{json, Value};

use super::{Call, Ctx, Decision, Evidence, Ids, Overlay};
use crate::config::VersionsConfig;
use crate::platform::ErrorKind;
use crate::route::Version;

/// The SDK a request announces: its name (`python`, `java`, ... or a configured name) and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sdk {
    /// Lower-case name; empty when only the version is known.
    pub name: String,
    /// Version.
    pub version: Version,
}

/// The versions overlay.
#[derive(Debug)]
pub(crate) struct Versions {
    /// `versions:` from `proxy.yaml`: routes with SDK ranges, and `User-Agent` patterns for other SDKs.
    cfg: VersionsConfig,
    /// For the correlation ids of 410 bodies.
    ids: std::sync::Arc<Ids>,
}

impl Versions {
    /// An overlay with `cfg`.
    pub(crate) fn new(cfg: VersionsConfig, ids: std::sync::Arc<Ids>) -> Versions {
        Versions { cfg, ids }
    }

    /// The SDK `call` announces, if any.
    pub(crate) fn sdk_of(&self, call: &Call<'_>) -> Option<Sdk> {
        let ua = call.header("user-agent").unwrap_or("");
        if let Some(v) = call.header("purecloud-sdk").and_then(Version::parse) {
            let name = ua
                .strip_prefix("PureCloud SDK/")
                .map(|l| l.split_whitespace().next().unwrap_or("").to_ascii_lowercase())
                .unwrap_or_default();
            return Some(Sdk { name, version: v });
        }
        self.cfg.agents.iter().find_map(|a| {
            let c = a.pattern.captures(ua)?;
            Some(Sdk { name: a.name.to_ascii_lowercase(), version: Version::parse(c.get(1)?.as_str())? })
        })
    }
}

impl Overlay for Versions {
    /// `versions`.
    fn name(&self) -> &'static str {
        "versions"
    }

    /// Answers 410 Gone when a deprecated route's range covers the request's SDK: the recorded 410 when
    /// the cassette holds one, else one naming the replacement path (body, and a `Link` header).
    fn on_request(&self, call: &Call<'_>, _ctx: &mut Ctx, ev: &Evidence<'_>) -> Decision {
        let recorded = ev.recorded;
        if self.cfg.routes.is_empty() {
            return Decision::Continue;
        }
        let routes = self.cfg.routes.iter().filter(|r| {
            r.method.as_deref().is_none_or(|m| m == call.method)
                && r.host.as_ref().is_none_or(|h| h.matches(call.host))
                && r.path.is_match(call.path)
        });
        let sdk = self.sdk_of(call);
        for r in routes {
            let applies = match &sdk {
                Some(s) => r.sdk_name.as_deref().is_none_or(|n| n == s.name) && r.sdk.contains(&s.version),
                // An SDK that says nothing of its version: only a route for every version applies.
                None => r.sdk_name.is_none() && r.sdk.as_str().trim() == "*",
            };
            if !applies || !r.deprecated {
                continue;
            }
            let who = match &sdk {
                Some(s) if !s.name.is_empty() => format!("SDK {} {}", s.name, s.version),
                Some(s) => format!("SDK {}", s.version),
                None => "this client".to_string(),
            };
            let message = match &r.replacement {
                Some(p) => format!(
                    "{} {} is deprecated for {who} (versions {}) and is gone; use {p} instead.",
                    call.method,
                    call.path,
                    r.sdk.as_str()
                ),
                None => format!(
                    "{} {} is deprecated for {who} (versions {}) and is gone.",
                    call.method,
                    call.path,
                    r.sdk.as_str()
                ),
            };
            let detail = format!("deprecated:{}", r.sdk.as_str());
            if let Some(a) = recorded.get(410, "gone") {
                return Decision::Answer(a);
            }
            let mut a =
                super::platform_error(&self.ids, call.platform(), 410, ErrorKind::Gone, &message, json!([]), detail);
            if let Some(p) = &r.replacement {
                a = a.with_header("link", format!("<{p}>; rel=\"successor-version\""));
                if let Ok(mut v) = serde_json::from_slice::<Value>(&a.body) {
                    v["replacement"] = Value::String(p.clone());
                    a.body = bytes::Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
                }
            }
            return Decision::Answer(a);
        }
        Decision::Continue
    }
}
