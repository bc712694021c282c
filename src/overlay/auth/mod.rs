//! The auth overlay: issues tokens on the virtual clock and checks every API call's bearer token,
//! answering as the platform does. Genesys Cloud: `login.<region>/oauth/token` (client credentials,
//! authorization code with or without PKCE, refresh with rotation) and a headless `/oauth/authorize`.
//! NICE CXone: `/auth/token` (access key as `password` grant, code + PKCE, refresh, token exchange)
//! and the older access-key endpoint, with RS256 tokens signed by callvcr's own key and served with a
//! matching discovery document and key set (the NICE SDK verifies `id_token` against them).

mod evidence;
mod grants;
mod nice;

use evidence::*;
pub(crate) use evidence::{form, is_token_request, presented};
use grants::*;
use nice::*;

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use super::jwt::Signer;
use super::{Answer, Call, Ctx, Decision, Evidence, Ids, Overlay, Platform, Principal, Recorded, RecordedToken};
use crate::config::{ConcurrentRefresh, RawAuth};
use crate::encoding::percent_decode;
use crate::platform::AuthRoute as Route;

/// Tokens kept before expired ones are forgotten.
const MAX_TOKENS: usize = 200_000;
/// How long an authorization code stays valid, in milliseconds.
const CODE_TTL_MS: i64 = 5 * 60_000;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Presented as a bearer on API calls.
    Access,
    /// Exchanged at the token endpoint for a new access token (and, rotated, a new refresh token).
    Refresh,
}

/// What the run knows of one token it issued.
#[derive(Debug, Clone)]
struct Issued {
    /// The OAuth client it was issued to (shared with every [`Principal`] it makes).
    client_id: Arc<str>,
    /// Access or refresh.
    kind: Kind,
    /// Issued for a user (every grant but client credentials).
    user: bool,
    /// The platform whose shape it has; the admin listing shows it.
    platform: Platform,
    /// When it was issued (virtual time).
    issued_ms: i64,
    /// When it stops working (virtual time); the admin API's `expire` moves this to now.
    expires_ms: i64,
    /// Set when a refresh token is rotated out; a revoked token is refused like an expired one.
    revoked: bool,
}

/// An authorization code handed out by the headless `/authorize`, waiting to be exchanged.
#[derive(Debug, Clone)]
struct Code {
    /// The client it was issued to; another client presenting it is refused.
    client_id: String,
    /// The `redirect_uri` of the authorize request; the token request must send the same one.
    redirect_uri: Option<String>,
    /// PKCE (`code_challenge_method`, `code_challenge`), when the authorize request sent one.
    challenge: Option<(String, String)>,
    /// When it stops being accepted ([`CODE_TTL_MS`] after issue).
    expires_ms: i64,
}

/// Everything the run issued, behind one lock.
#[derive(Debug, Default)]
struct State {
    /// Tokens by their text; bounded by [`MAX_TOKENS`] (expired and revoked ones go first).
    tokens: HashMap<String, Issued>,
    /// Authorization codes not yet exchanged.
    codes: HashMap<String, Code>,
    /// Client id → virtual time its refresh in flight completes.
    refreshing: HashMap<String, i64>,
    /// Access tokens issued before the last reset (a cassette switch): the run made them invalid,
    /// so they are refused whatever the recording shows.
    forgotten: std::collections::HashSet<String>,
}

/// A token as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    /// The first characters of the token (a JWT's are its header, the same for every token).
    pub token_prefix: String,
    /// A short fingerprint of the whole token (FNV-1a, hex): tells tokens apart without showing them.
    pub token_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// `access` or `refresh`.
    pub kind: &'static str,
    /// `genesys` or `nice`.
    pub platform: &'static str,
    /// Issue time, RFC 3339.
    pub issued_at: String,
    /// Expiry, RFC 3339.
    pub expires_at: String,
    /// Whether it is past its expiry now.
    pub expired: bool,
    /// Whether it was revoked (a rotated refresh token).
    pub revoked: bool,
}

/// Which tokens `expire` acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpireFilter {
    /// Every access token.
    All,
    /// Every access token of this client.
    Client(String),
    /// This one token (access or refresh).
    Token(String),
}

/// Where the key that signs NICE tokens comes from, asked once, when first needed.
pub(crate) type KeySource = Box<dyn Fn() -> Result<Signer, String> + Send + Sync>;

/// The auth overlay.
pub struct Auth {
    /// `auth:` from `proxy.yaml`: accepted clients, lifetimes, refresh behaviour.
    cfg: RawAuth,
    /// For token ids, refresh tokens and correlation ids, from the run's seed.
    ids: Arc<Ids>,
    /// Signs Genesys and generic tokens, with a key drawn from the seed (same seed, same tokens).
    hs: Signer,
    /// Where the NICE signing key comes from; asked at most once.
    nice_source: KeySource,
    /// The NICE signer once asked for, or why there is none (every NICE token request then gets a 500
    /// naming it).
    nice: std::sync::OnceLock<Result<Signer, String>>,
    /// Issued tokens and codes; writers go through [`Auth::state()`], which moves `generation` on.
    state: std::sync::RwLock<State>,
    /// Moves on with every change to `state`: per-thread copies of a checked token are good
    /// while it stands still.
    generation: std::sync::atomic::AtomicU64,
    /// Tells this overlay's per-thread copies from another's (never reused in a process).
    instance: u64,
}

/// The last access token a thread checked, with what the check found: the next request with the
/// same bearer (the common case) needs neither the token table's lock nor a shared count.
struct Checked {
    /// The [`Auth::instance`] that checked it: a cache entry of another overlay (a test, a cassette
    /// check) is never taken.
    auth: u64,
    /// The overlay's generation when checked; any change since makes the entry stale.
    generation: u64,
    /// The bearer checked.
    token: String,
    /// This thread's own copy, so handing it out does not touch a count other threads share.
    client_id: Arc<str>,
    /// Whether the token speaks for a user.
    user: bool,
    /// Its expiry when checked; compared with each request's own virtual now.
    expires_ms: i64,
    /// Whether it was revoked when checked.
    revoked: bool,
}

thread_local! {
    /// This thread's last checked bearer (see [`Checked`]).
    static CHECKED: std::cell::RefCell<Option<Checked>> = const { std::cell::RefCell::new(None) };
}

impl std::fmt::Debug for Auth {
    /// How many clients are configured: never secrets or tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("clients", &self.cfg.clients.len()).finish_non_exhaustive()
    }
}

/// Whether a request is an API call whose bearer token the platform checks.
fn is_api_call(call: &Call<'_>) -> bool {
    let p = call.platform();
    p.checks_bearer(call.host, call.path)
        && (p.requires_bearer() || call.headers.contains_key(http::header::AUTHORIZATION))
}

/// Milliseconds to whole seconds, rounding down (also before 1970), as JWT `iat` and `exp` count.
fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

impl Auth {
    /// An overlay with `cfg`, drawing ids from `ids`; `nice` gives the key that signs NICE CXone
    /// tokens (RS256), asked for when a NICE token is first issued.
    pub fn new(cfg: RawAuth, ids: Arc<Ids>, nice: KeySource) -> Auth {
        // Tokens only callvcr reads are signed with a key drawn from the seed: same seed, same tokens.
        let secret = Ids::new(super::ids::mix(ids.seed() ^ 0x6361_6c6c_7663_7221)).bytes(32);
        Auth {
            cfg,
            ids,
            hs: Signer::hs256(&secret),
            nice_source: nice,
            nice: std::sync::OnceLock::new(),
            state: std::sync::RwLock::new(State::default()),
            generation: std::sync::atomic::AtomicU64::new(0),
            instance: {
                /// The next instance number; process-wide, so two overlays never share one.
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }

    /// The state, to change: moves `generation` on, so every thread's cached check is dropped.
    fn state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        let g = self.state.write().unwrap_or_else(|e| e.into_inner());
        // Moved on while the lock is held: a reader that sees the new number reads the new state.
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        g
    }

    /// The hot path's view: many requests check bearers at once without waiting on each other.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `id` (with `secret`, when given) is a client this overlay accepts.
    fn client_check(&self, id: &str, secret: Option<&str>) -> ClientCheck {
        if id.is_empty() {
            return ClientCheck::Unknown;
        }
        if self.cfg.clients.is_empty() {
            return ClientCheck::Ok;
        }
        match self.cfg.clients.iter().find(|c| c.id == id) {
            None => ClientCheck::Unknown,
            Some(c) => match (&c.secret, secret) {
                (Some(want), Some(got)) if want == got => ClientCheck::Ok,
                (Some(_), _) => ClientCheck::BadSecret,
                (None, _) => ClientCheck::Ok,
            },
        }
    }

    /// An access token's lifetime: as configured, else as the recording shows, else the
    /// platform's usual (a day for Genesys, an hour for NICE).
    fn ttl_ms(&self, p: Platform, recorded_s: Option<i64>) -> i64 {
        let configured = match p {
            Platform::Genesys => self.cfg.ttl_s.genesys,
            Platform::Nice => self.cfg.ttl_s.nice,
            Platform::Generic => self.cfg.ttl_s.generic,
        };
        1000 * configured.map(|s| s as i64).or(recorded_s.filter(|s| *s > 0)).unwrap_or(p.default_token_ttl_s())
    }

    /// A new token of `shape`: its length, drawn from its alphabet by the seeded ids.
    fn shaped(&self, shape: &crate::cassette::model::TokenShape) -> String {
        let chars = shape.chars();
        self.ids.bytes(shape.len.min(4096)).iter().map(|b| chars[*b as usize % chars.len()]).collect()
    }

    /// Keeps a token just issued; past [`MAX_TOKENS`], expired and revoked ones are forgotten first.
    fn remember(&self, st: &mut State, token: &str, issued: Issued, now_ms: i64) {
        if st.tokens.len() >= MAX_TOKENS {
            st.tokens.retain(|_, t| t.expires_ms > now_ms && !t.revoked);
        }
        st.tokens.insert(token.to_string(), issued);
    }

    /// The NICE signer, asking its source the first time; a 500 answer (and one log line) when there is
    /// no key.
    fn nice_signer(&self) -> Result<&Signer, Answer> {
        self.nice.get_or_init(|| (self.nice_source)()).as_ref().map_err(|e| {
            tracing::error!("cannot sign NICE tokens: {e}");
            Answer::json(
                500,
                &json!({"error": "server_error", "error_description": format!("callvcr cannot sign NICE tokens: {e}")}),
                "signing-key-unavailable",
            )
        })
    }

    /// Issues an access token (and a refresh token when `with_refresh`) to `client_id`, shaped as
    /// the platform's: JWT-shaped and HS256 for Genesys (its SDKs never read them), RS256 JWTs with
    /// the platform's claims for NICE (its SDK reads and verifies them).
    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        st: &mut State,
        client_id: &str,
        platform: Platform,
        issuer_host: &str,
        grant: &str,
        with_refresh: bool,
        now_ms: i64,
        recorded_ttl_s: Option<i64>,
        recorded: Option<&Recorded>,
    ) -> Result<Issue, Answer> {
        let ttl = self.ttl_ms(platform, recorded_ttl_s);
        let refresh_ttl = 1000 * self.cfg.refresh_ttl_s as i64;
        let (iat, exp) = (secs(now_ms), secs(now_ms + ttl));
        let shared: Arc<str> = Arc::from(client_id);
        let user = grant != "client_credentials";
        let issued = |kind, expires_ms| Issued {
            client_id: shared.clone(),
            kind,
            user,
            platform,
            issued_ms: now_ms,
            expires_ms,
            revoked: false,
        };
        let (access, refresh, id_token) = if platform == Platform::Nice {
            let signer = self.nice_signer()?;
            let kid = recorded.and_then(|r| recorded_kid(r, issuer_host));
            let who = NiceIdentity::of(client_id);
            let iss = format!("https://{issuer_host}");
            let sign = |c: &Value| {
                signer.sign_as(c, kid.as_deref()).map_err(|e| {
                    Answer::json(
                        500,
                        &json!({"error": "server_error", "error_description": e.to_string()}),
                        "sign-failed",
                    )
                })
            };
            // The claims the platform put in this client's or user's tokens, when the recording
            // shows them (tenant, user, business unit, issuer, audience), on the virtual clock.
            let learned = recorded.and_then(|r| recorded_claims(r, issuer_host, client_id));
            let fresh = |mut c: serde_json::Map<String, Value>| {
                // The recorded claims, with those minted afresh set now (`iat`/`exp` always; the
                // others where the platform had them).
                for &k in crate::cassette::redact::FRESH_CLAIMS {
                    let v: Value = match k {
                        "exp" => exp.into(),
                        "jti" => Value::String(self.ids.uuid()),
                        _ => iat.into(),
                    };
                    if matches!(k, "iat" | "exp") || c.contains_key(k) {
                        c.insert(k.into(), v);
                    }
                }
                Value::Object(c)
            };
            let claims = match &learned {
                Some(l) => fresh(l.access.clone()),
                None => {
                    let mut c = who.claims(&iss, iat, exp);
                    c["jti"] = Value::String(self.ids.uuid());
                    c["grant"] = Value::String(grant.into());
                    c
                }
            };
            let access = sign(&claims)?;
            let refresh = if with_refresh {
                Some(sign(&json!({
                    "aud": who.aud,
                    "iss": iss,
                    "id": who.user_id,
                    "sessionId": self.ids.uuid(),
                    "iat": iat,
                    "exp": secs(now_ms + refresh_ttl),
                }))?)
            } else {
                None
            };
            let id = match learned.as_ref().and_then(|l| l.id.clone()) {
                Some(c) => sign(&fresh(c))?,
                None => sign(&who.claims(&iss, iat, exp))?,
            };
            (access, refresh, Some(id))
        } else {
            let claims = json!({
                "iss": "callvcr",
                "sub": client_id,
                "grant": grant,
                "iat": iat,
                "exp": exp,
                "jti": self.ids.uuid(),
            });
            // Tokens shaped like the platform's for this client, when the recording shows them
            // (length and alphabet); else callvcr's own.
            let shapes = recorded.map(|r| recorded_shapes(r, issuer_host, client_id)).unwrap_or_default();
            let shaped = |field: &str| shapes.iter().find(|s| s.field == field).map(|s| self.shaped(s));
            let access =
                shaped("access_token").unwrap_or_else(|| self.hs.sign(&claims).unwrap_or_else(|_| self.ids.uuid()));
            let refresh = with_refresh
                .then(|| shaped("refresh_token").unwrap_or_else(|| URL_SAFE_NO_PAD.encode(self.ids.bytes(32))));
            (access, refresh, None)
        };
        self.remember(st, &access, issued(Kind::Access, now_ms + ttl), now_ms);
        if let Some(r) = &refresh {
            self.remember(st, r, issued(Kind::Refresh, now_ms + refresh_ttl), now_ms);
        }
        Ok(Issue { platform, access, refresh, id_token, expires_in: ttl / 1000, correlation: self.ids.uuid() })
    }

    /// Expires tokens now; returns how many were live and are now expired.
    pub fn expire(&self, filter: &ExpireFilter, now_ms: i64) -> usize {
        let mut st = self.state();
        let mut n = 0;
        for (tok, t) in st.tokens.iter_mut() {
            let hit = match filter {
                ExpireFilter::All => t.kind == Kind::Access,
                ExpireFilter::Client(c) => t.kind == Kind::Access && &*t.client_id == c.as_str(),
                ExpireFilter::Token(x) => tok == x,
            };
            if hit && t.expires_ms > now_ms {
                t.expires_ms = now_ms;
                n += 1;
            }
        }
        n
    }

    /// Every token issued in this run.
    pub fn tokens(&self, now_ms: i64) -> Vec<TokenInfo> {
        let st = self.state();
        let mut v: Vec<(i64, TokenInfo)> = st
            .tokens
            .iter()
            .map(|(tok, t)| {
                (
                    t.issued_ms,
                    TokenInfo {
                        token_prefix: tok.chars().take(12).collect(),
                        token_id: format!("{:016x}", crate::encoding::fnv1a(tok.as_bytes())),
                        client_id: t.client_id.to_string(),
                        kind: if t.kind == Kind::Access { "access" } else { "refresh" },
                        platform: t.platform.as_str(),
                        issued_at: crate::clock::rfc3339_ms(t.issued_ms),
                        expires_at: crate::clock::rfc3339_ms(t.expires_ms),
                        expired: t.expires_ms <= now_ms,
                        revoked: t.revoked,
                    },
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.token_id.cmp(&b.1.token_id)));
        v.into_iter().map(|(_, t)| t).collect()
    }

    /// The platform's own refusal when the cassette holds it, else ours in its shape.
    fn refusal(&self, recorded: &Recorded, ours: Answer) -> Answer {
        let code = serde_json::from_slice::<Value>(&ours.body)
            .ok()
            .and_then(|v| v.get("code").or_else(|| v.get("error")).and_then(Value::as_str).map(String::from))
            .unwrap_or_default();
        match recorded.get(ours.status, &code) {
            Some(r) => Answer { detail: ours.detail, basis: ours.basis, ..r },
            None => ours,
        }
    }

    /// An API call's 401, in the platform's shape.
    fn unauthorized(&self, platform: Platform, code: &str, message: &str, detail: &str) -> Answer {
        Answer::from_error(platform.unauthorized(code, message, self.ids.uuid()), detail)
    }

    /// Checks an API call's bearer: missing or unknown tokens are refused by rule (a recording of this
    /// very request answered otherwise wins); expired, revoked and pre-reset tokens are refused by the
    /// run. A good token sets `ctx.principal` and lets the request on.
    fn check_bearer(&self, call: &Call<'_>, ctx: &mut Ctx, recorded: &Recorded, ev: &Evidence<'_>) -> Decision {
        let p = call.platform();
        let Some(token) = call.bearer() else {
            let refused = self.refusal(
                recorded,
                self.unauthorized(
                    p,
                    "authentication.required",
                    "No authentication bearer token specified in authorization header.",
                    "missing-token",
                ),
            );
            // The recording answers a request sent with no credential only when it shows one
            // sent without: a recording made with a token says nothing of a request that has none.
            let sent_none = call.header("authorization").is_none_or(crate::cassette::redact::no_credential);
            let recorded_with_token = sent_none
                && ev.peek().is_some_and(|pk| {
                    pk.exchange
                        .request
                        .header("authorization")
                        .is_some_and(|v| !crate::cassette::redact::no_credential(v))
                });
            return Decision::Answer(if recorded_with_token { refused } else { refused.by_rule() });
        };
        // The hot path: this thread checked the same token last time and nothing changed since.
        let me = self.instance;
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let cached = CHECKED.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|c| c.auth == me && c.generation == generation && c.token == token)
                .map(|c| (c.client_id.clone(), c.user, c.revoked || c.expires_ms <= ctx.now_ms))
        });
        let found = cached.or_else(|| {
            let state = self.read();
            let t = state.tokens.get(token).filter(|t| t.kind == Kind::Access)?;
            let client_id: Arc<str> = Arc::from(&*t.client_id);
            let (user, expires_ms, revoked) = (t.user, t.expires_ms, t.revoked);
            drop(state);
            CHECKED.with(|c| {
                *c.borrow_mut() = Some(Checked {
                    auth: me,
                    generation,
                    token: token.to_string(),
                    client_id: client_id.clone(),
                    user,
                    expires_ms,
                    revoked,
                })
            });
            Some((client_id, user, revoked || expires_ms <= ctx.now_ms))
        });
        match found {
            None if self.read().forgotten.contains(token) => Decision::Answer(self.refusal(
                recorded,
                self.unauthorized(p, "bad.credentials", "Invalid login credentials.", "reset-token"),
            )),
            // A token this run never issued: refused, unless the recording shows this request
            // answered (an SDK given a token from outside, recorded with it).
            None => Decision::Answer(
                self.refusal(
                    recorded,
                    self.unauthorized(p, "bad.credentials", "Invalid login credentials.", "unknown-token"),
                )
                .by_rule(),
            ),
            Some((_, _, true)) => Decision::Answer(self.refusal(
                recorded,
                self.unauthorized(
                    p,
                    "credentials.expired",
                    "The supplied credentials are expired and cannot be used.",
                    "expired-token",
                ),
            )),
            Some((client_id, user, false)) => {
                ctx.principal = Some(Principal { client_id, user });
                Decision::Continue
            }
        }
    }
}

/// Whether a client id and secret are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientCheck {
    /// Accepted.
    Ok,
    /// No such client (or no client id at all).
    Unknown,
    /// A known client, with the wrong secret or none.
    BadSecret,
}

/// Tokens just issued.
struct Issue {
    /// Whose answer shape to use.
    platform: Platform,
    /// The access token.
    access: String,
    /// The refresh token, when the grant gives one.
    refresh: Option<String>,
    /// The OpenID `id_token` (NICE only).
    id_token: Option<String>,
    /// The access token's lifetime in seconds, as `expires_in` says.
    expires_in: i64,
    /// Genesys's `inin-correlation-id` for the answer.
    correlation: String,
}

impl Issue {
    /// The token endpoint's 200, as the platform writes it.
    fn answer(&self) -> Answer {
        let nice = self.platform == Platform::Nice;
        let mut body = json!({
            "access_token": self.access,
            "token_type": if nice { "Bearer" } else { "bearer" },
            "expires_in": self.expires_in,
        });
        if let Some(r) = &self.refresh {
            body["refresh_token"] = Value::String(r.clone());
        }
        if let Some(id) = &self.id_token {
            body["id_token"] = Value::String(id.clone());
        }
        if nice {
            body["issued_token_type"] = Value::String("urn:ietf:params:oauth:token-type:access_token".into());
        }
        let a = Answer::json(200, &body, "token-issued")
            .with_header("cache-control", "no-cache, no-store, must-revalidate")
            .with_header("pragma", "no-cache");
        if nice {
            a
        } else {
            a.with_header("inin-correlation-id", self.correlation.clone())
        }
    }
}

/// The shapes of the opaque tokens the recording shows the platform issuing on `host` to `id`.
fn recorded_shapes(recorded: &Recorded, host: &str, id: &str) -> Vec<crate::cassette::model::TokenShape> {
    let tokens = recorded.tokens();
    tokens
        .iter()
        .filter(|t| t.host == host && (200..300).contains(&t.answer.status) && !t.shapes.is_empty())
        .find(|t| t.credentials.iter().any(|c| c.id == id))
        .map(|t| t.shapes.clone())
        .unwrap_or_default()
}

/// The claims of the tokens the recording shows the platform issuing on `host` to `id` (a client,
/// user or access key), read from its recorded token answer: those of its access token, and of its
/// `id_token` when it had one.
#[derive(Debug, Clone)]
pub(super) struct LearnedClaims {
    /// The access token's claims.
    pub(super) access: serde_json::Map<String, Value>,
    /// The `id_token`'s claims.
    pub(super) id: Option<serde_json::Map<String, Value>>,
}

/// What the recording's token answers for `id` on `host` say their tokens carried; `None` when no
/// recorded answer for it holds a JWT with its claims (a cassette recorded before claims were kept).
/// An answer of this overlay with the headers the recording shows the platform sending with the
/// same status to this request (caching, the content type's parameters), where it has none of its
/// own; the content type as recorded when it names the same media type.
fn dressed(d: Decision, ev: &Evidence<'_>) -> Decision {
    let Decision::Answer(mut a) = d else { return d };
    let Some(p) = ev.peek().filter(|p| p.exchange.response.status == a.status) else { return Decision::Answer(a) };
    let media = |v: &str| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    for (k, v) in &p.exchange.response.headers {
        let name = k.to_ascii_lowercase();
        let skip = v == crate::cassette::redact::MARKER
            || matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "date" | "location" | "set-cookie"
            )
            || crate::cassette::model::HOP_BY_HOP.contains(&name.as_str());
        if skip {
            continue;
        }
        match a.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            Some((_, ours)) if name == "content-type" && media(ours) == media(v) => *ours = v.clone(),
            Some(_) => {}
            None => a.headers.push((k.clone(), v.clone())),
        }
    }
    Decision::Answer(a)
}

/// The key id the platform's tokens on `host` name in their header, as the recording shows them:
/// tokens callvcr signs name it too, and its key set serves callvcr's key under it.
pub(super) fn recorded_kid(recorded: &Recorded, host: &str) -> Option<String> {
    let tokens = recorded.tokens();
    tokens.iter().filter(|t| t.host == host && (200..300).contains(&t.answer.status)).find_map(|t| {
        let body = serde_json::from_slice::<Value>(&t.answer.body).ok()?;
        ["id_token", "access_token"].iter().find_map(|k| {
            let header = crate::cassette::redact::jwt_header(body.get(*k)?.as_str()?)?;
            header.get("kid")?.as_str().map(String::from)
        })
    })
}

pub(super) fn recorded_claims(recorded: &Recorded, host: &str, id: &str) -> Option<LearnedClaims> {
    let tokens = recorded.tokens();
    tokens
        .iter()
        .filter(|t| t.host == host && (200..300).contains(&t.answer.status))
        .filter(|t| t.credentials.iter().any(|c| c.id == id))
        .find_map(|t| {
            let body = serde_json::from_slice::<Value>(&t.answer.body).ok()?;
            let claims = |k: &str| body.get(k).and_then(Value::as_str).and_then(crate::cassette::redact::jwt_claims);
            let access = claims("access_token")?;
            Some(LearnedClaims { access, id: claims("id_token") })
        })
}

impl Overlay for Auth {
    /// `auth`.
    fn name(&self) -> &'static str {
        "auth"
    }

    /// Answers the platform's auth endpoints (token, access key, authorize, NICE discovery and key set)
    /// itself; checks the bearer of every API call the platform checks; lets anything else on.
    fn on_request(&self, call: &Call<'_>, ctx: &mut Ctx, ev: &Evidence<'_>) -> Decision {
        let recorded = ev.recorded;
        match call.platform().auth_route(call.host, call.method, call.path) {
            Some(Route::Token) => return self.token_request(call, ctx, ev, false),
            Some(Route::AccessKey) => return self.token_request(call, ctx, ev, true),
            // Answered as the platform's recorded answer was sent: its headers too.
            Some(Route::Authorize) => return dressed(self.authorize(call, ctx), ev),
            Some(Route::Discovery) => return dressed(self.nice_discovery(call, ev), ev),
            Some(Route::Jwks) => return dressed(self.nice_jwks(call, ev), ev),
            None => {}
        }
        if is_api_call(call) {
            return self.check_bearer(call, ctx, recorded, ev);
        }
        Decision::Continue
    }

    /// The auth endpoints: their recordings are never replayed, so they do not count as unused.
    fn owns(&self, host: &str, path: &str) -> bool {
        Platform::of_host(host).auth_route(host, "", path).is_some()
    }

    /// Forgets every token and code; access tokens issued so far are remembered as forgotten, so an SDK
    /// still holding one is refused (401) rather than let through by a recording.
    fn reset(&self) {
        let mut st = self.state();
        let mut forgotten = std::mem::take(&mut st.forgotten);
        if forgotten.len() > MAX_TOKENS {
            forgotten.clear();
        }
        forgotten.extend(st.tokens.drain().filter(|(_, t)| t.kind == Kind::Access).map(|(k, _)| k));
        *st = State { forgotten, ..State::default() };
    }
}

#[cfg(test)]
mod tests;
