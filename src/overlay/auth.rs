//! The auth overlay: issues tokens on the virtual clock and checks every API call's bearer token,
//! answering as the platform does. Genesys Cloud: `login.<region>/oauth/token` (client credentials,
//! authorization code with or without PKCE, refresh with rotation) and a headless `/oauth/authorize`.
//! NICE CXone: `/auth/token` (access key as `password` grant, code + PKCE, refresh, token exchange)
//! and the older access-key endpoint, with RS256 tokens signed by callvcr's own key and served with a
//! matching discovery document and key set (the NICE SDK verifies `id_token` against them).

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use super::jwt::Signer;
use super::{Answer, Call, Ctx, Decision, Evidence, Ids, Overlay, Platform, Principal, Recorded, RecordedToken};
use crate::cassette::redact::percent_decode;
use crate::config::{ConcurrentRefresh, RawAuth};
use crate::platform::AuthRoute as Route;

/// Tokens kept before expired ones are forgotten.
const MAX_TOKENS: usize = 200_000;
/// How long an authorization code stays valid, in milliseconds.
const CODE_TTL_MS: i64 = 5 * 60_000;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Access,
    Refresh,
}

#[derive(Debug, Clone)]
struct Issued {
    client_id: Arc<str>,
    kind: Kind,
    /// Issued for a user (every grant but client credentials).
    user: bool,
    platform: Platform,
    issued_ms: i64,
    expires_ms: i64,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    redirect_uri: Option<String>,
    challenge: Option<(String, String)>,
    expires_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<String, Issued>,
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
    /// The first characters of the token.
    pub token_prefix: String,
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
pub type KeySource = Box<dyn Fn() -> Result<Signer, String> + Send + Sync>;

/// The auth overlay.
pub struct Auth {
    cfg: RawAuth,
    ids: Arc<Ids>,
    hs: Signer,
    nice_source: KeySource,
    nice: std::sync::OnceLock<Result<Signer, String>>,
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
    auth: u64,
    generation: u64,
    token: String,
    /// This thread's own copy, so handing it out does not touch a count other threads share.
    client_id: Arc<str>,
    user: bool,
    expires_ms: i64,
    revoked: bool,
}

thread_local!(static CHECKED: std::cell::RefCell<Option<Checked>> = const { std::cell::RefCell::new(None) });

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("clients", &self.cfg.clients.len()).finish_non_exhaustive()
    }
}

/// Parses an `application/x-www-form-urlencoded` body or query (a repeated name keeps its last value).
pub fn form(s: &str) -> HashMap<String, String> {
    crate::cassette::fingerprint::decode_pairs(s).into_iter().collect()
}

/// The client id and secret in an HTTP Basic `Authorization` value.
fn basic_pair(authorization: Option<&str>) -> Option<(String, String)> {
    let (scheme, rest) = authorization?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((percent_decode(id), percent_decode(secret)))
}

/// A token request's parameters: `grant_type` and the rest in a form body (also when the NICE SDK
/// labels it `application/json`), a JSON object body, or the NICE access-key endpoint's JSON
/// (`accessKeyId`, `accessKeySecret`, read as a password grant).
fn token_params(body: &[u8], access_key: bool) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    let mut params: HashMap<String, String> = if text.trim_start().starts_with('{') {
        serde_json::from_str::<serde_json::Map<String, Value>>(&text)
            .map(|m| m.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string()))).collect())
            .unwrap_or_default()
    } else {
        form(&text)
    };
    if access_key {
        params.insert("grant_type".into(), "password".into());
        params.insert("username".into(), params.get("accessKeyId").cloned().unwrap_or_default());
        params.insert("password".into(), params.get("accessKeySecret").cloned().unwrap_or_default());
    }
    params
}

/// One identity a token request presents, with its secret (live only: a cassette keeps the id and
/// a verifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// `client`, `access-key` or `user`.
    pub role: &'static str,
    /// The client id, access key id or user name.
    pub id: String,
    /// The secret, when sent.
    pub secret: Option<String>,
}

/// A secret as sent; the redaction marker (a recorded request sent again, as `cassette check`
/// does) is no secret at all.
fn secret_of(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty() && s != crate::cassette::redact::MARKER)
}

fn presented_by(
    platform: Platform,
    params: &HashMap<String, String>,
    basic: Option<&(String, String)>,
) -> Vec<Presented> {
    let mut out = Vec::new();
    let (client_id, client_secret) = match basic {
        Some((id, s)) => (id.clone(), Some(s.clone())),
        None => (params.get("client_id").cloned().unwrap_or_default(), params.get("client_secret").cloned()),
    };
    if !client_id.is_empty() {
        out.push(Presented { role: "client", id: client_id, secret: secret_of(client_secret) });
    }
    if params.get("grant_type").map(String::as_str) == Some("password") {
        let id = params.get("username").cloned().unwrap_or_default();
        if !id.is_empty() {
            let role = if platform == Platform::Nice { "access-key" } else { "user" };
            out.push(Presented { role, id, secret: secret_of(params.get("password").cloned()) });
        }
    }
    out
}

/// The identities a request presents when it is a token request (empty otherwise): what a
/// recording keeps, as ids and verifiers, for replay to answer a wrong secret as the platform did.
pub fn presented(host: &str, method: &str, path: &str, authorization: Option<&str>, body: &[u8]) -> Vec<Presented> {
    let host = host.split(':').next().unwrap_or(host);
    let access_key = match Platform::of_host(host).auth_route(host, method, path) {
        Some(Route::Token) => false,
        Some(Route::AccessKey) => true,
        _ => return Vec::new(),
    };
    let params = token_params(body, access_key);
    presented_by(Platform::of_host(host), &params, basic_pair(authorization).as_ref())
}

/// Whether a request is a token request (either platform).
pub fn is_token_request(host: &str, method: &str, path: &str) -> bool {
    let host = host.split(':').next().unwrap_or(host);
    matches!(Platform::of_host(host).auth_route(host, method, path), Some(Route::Token | Route::AccessKey))
}

/// What a cassette says about a token request's credentials.
enum Verdict {
    /// Refused, with this answer.
    Refuse(Answer),
    /// Refused by the platform at this point of the recording, with nothing to tell secrets
    /// apart by: the cassette answers.
    FollowCassette,
    /// Accepted; the recorded answer gives the shape.
    Accept(Answer),
    /// The cassette does not say.
    Unknown,
}

/// A recorded exchange's answer.
fn answer_of(e: &crate::cassette::model::Exchange) -> Answer {
    super::recorded_answer(
        e.response.status,
        &e.response.headers,
        &e.response.body.bytes,
        format!("recorded:#{}", e.seq),
    )
}

/// The `expires_in` of a recorded token answer.
fn recorded_ttl_s(a: &Answer) -> Option<i64> {
    serde_json::from_slice::<Value>(&a.body).ok()?.get("expires_in")?.as_i64()
}

/// A minted token answer in the shape of the recorded one: the recorded fields, headers and order,
/// with the minted tokens and lifetime in place of the recorded (redacted) ones. Fields the
/// recording lacks are left out, fields only it has are kept as recorded.
fn reshape(minted: Answer, recorded: &Answer) -> Answer {
    let (Ok(Value::Object(ours)), Ok(Value::Object(theirs))) =
        (serde_json::from_slice::<Value>(&minted.body), serde_json::from_slice::<Value>(&recorded.body))
    else {
        return minted;
    };
    let mut out = serde_json::Map::new();
    for (k, v) in theirs {
        let mine =
            ours.get(&k).filter(|_| matches!(k.as_str(), "access_token" | "refresh_token" | "id_token" | "expires_in"));
        out.insert(k, mine.cloned().unwrap_or(v));
    }
    let correlation = minted.headers.iter().find(|(k, _)| k == "inin-correlation-id").map(|(_, v)| v.clone());
    let headers = recorded
        .headers
        .iter()
        // A redacted header (a cookie) is not sent as the marker.
        .filter(|(_, v)| v != crate::cassette::redact::MARKER)
        .map(|(k, v)| match (&correlation, k.eq_ignore_ascii_case("inin-correlation-id")) {
            (Some(c), true) => (k.clone(), c.clone()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    Answer {
        status: recorded.status,
        headers,
        body: bytes::Bytes::from(serde_json::to_vec(&Value::Object(out)).unwrap_or_default()),
        ..minted
    }
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()))
}

/// Whether a request is an API call whose bearer token the platform checks.
fn is_api_call(call: &Call<'_>) -> bool {
    call.platform().checks_bearer(call.host, call.path)
}

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
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }

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
            Platform::Nice => self.cfg.ttl_s.nice,
            _ => self.cfg.ttl_s.genesys,
        };
        1000 * configured.map(|s| s as i64).or(recorded_s.filter(|s| *s > 0)).unwrap_or(p.default_token_ttl_s())
    }

    fn remember(&self, st: &mut State, token: &str, issued: Issued, now_ms: i64) {
        if st.tokens.len() >= MAX_TOKENS {
            st.tokens.retain(|_, t| t.expires_ms > now_ms && !t.revoked);
        }
        st.tokens.insert(token.to_string(), issued);
    }

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
            let who = NiceIdentity::of(client_id);
            let iss = format!("https://{issuer_host}");
            let sign = |c: &Value| {
                signer.sign(c).map_err(|e| {
                    Answer::json(
                        500,
                        &json!({"error": "server_error", "error_description": e.to_string()}),
                        "sign-failed",
                    )
                })
            };
            let mut claims = who.claims(&iss, iat, exp);
            claims["jti"] = Value::String(self.ids.uuid());
            claims["grant"] = Value::String(grant.into());
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
            let id = sign(&who.claims(&iss, iat, exp))?;
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
            let access = self.hs.sign(&claims).unwrap_or_else(|_| self.ids.uuid());
            let refresh = with_refresh.then(|| URL_SAFE_NO_PAD.encode(self.ids.bytes(32)));
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
        v.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.token_prefix.cmp(&b.1.token_prefix)));
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

    fn check_bearer(&self, call: &Call<'_>, ctx: &mut Ctx, recorded: &Recorded) -> Decision {
        let p = call.platform();
        let Some(token) = call.bearer() else {
            return Decision::Answer(
                self.refusal(
                    recorded,
                    self.unauthorized(
                        p,
                        "authentication.required",
                        "No authentication bearer token specified in authorization header.",
                        "missing-token",
                    ),
                )
                .by_rule(),
            );
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

    /// A token request, either platform: `grant_type` in a form body (also when the NICE SDK labels
    /// that body `application/json`), a JSON object body, or the access-key endpoint's JSON.
    fn token_request(&self, call: &Call<'_>, ctx: &mut Ctx, ev: &Evidence<'_>, access_key: bool) -> Decision {
        let params = token_params(call.body, access_key);
        let basic = basic_pair(call.header("authorization"));
        let fresh = ev.peek().is_some_and(|p| p.fresh);
        tracing::debug!(
            recorded = ?ev.peek().map(|p| (p.exchange.seq, p.exchange.response.status, p.fresh)),
            "token request: the recording it would get"
        );
        // What the recording shows the platform answering these credentials comes first.
        let (accepted, shape) = match self.evidence_for(call, &params, basic.as_ref(), ev) {
            Verdict::Refuse(a) => {
                ctx.took_recording = fresh;
                tracing::info!(detail = %a.detail, status = a.status, "token request refused as the recording shows");
                return Decision::Answer(a);
            }
            Verdict::FollowCassette => return Decision::Continue,
            Verdict::Accept(shape) => (true, Some(shape)),
            Verdict::Unknown => {
                let shape = ev
                    .peek()
                    .filter(|p| p.fresh && (200..300).contains(&p.exchange.response.status))
                    .map(|p| answer_of(&p.exchange));
                // A recorded request sent again as recorded (`cassette check`): its secrets are the
                // redaction marker, and the recording says the platform accepted it here.
                let marker = crate::cassette::redact::MARKER;
                let redacted = call.header("authorization").is_some_and(|v| v.contains(marker))
                    || params.values().any(|v| v == marker);
                (redacted && shape.is_some(), shape)
            }
        };
        let ttl = shape.as_ref().and_then(recorded_ttl_s);
        let grant = params.get("grant_type").map(String::as_str).unwrap_or("");
        let marker = crate::cassette::redact::MARKER;
        let replayed_as_recorded =
            call.header("authorization").is_some_and(|v| v.contains(marker)) || params.values().any(|v| v == marker);
        if let (true, Some(sh)) =
            (accepted && (replayed_as_recorded || matches!(grant, "client_credentials" | "password")), &shape)
        {
            // The recording shows these credentials accepted here: tokens as the platform gave them.
            let platform = call.platform();
            let who = presented_by(platform, &params, basic.as_ref())
                .into_iter()
                .find(|p| p.role != "client")
                .or_else(|| presented_by(platform, &params, basic.as_ref()).into_iter().next())
                .map(|p| p.id)
                .or_else(|| ev.peek().and_then(|p| p.exchange.credentials.first().map(|c| c.id.clone())))
                .unwrap_or_default();
            let with_refresh =
                serde_json::from_slice::<Value>(&sh.body).ok().is_some_and(|v| v.get("refresh_token").is_some());
            let grant = if grant.is_empty() { "client_credentials" } else { grant };
            let mut st = self.state();
            let issued = self.issue(&mut st, &who, platform, call.host, grant, with_refresh, ctx.now_ms, ttl);
            drop(st);
            ctx.took_recording = fresh;
            return match issued {
                Ok(i) => Decision::Answer(reshape(i.answer(), sh)),
                Err(a) => Decision::Answer(a),
            };
        }
        match self.grant(call, ctx, ev.recorded, &params, basic, accepted, ttl) {
            Decision::Answer(a) if a.detail == "token-issued" => match &shape {
                Some(sh) => {
                    ctx.took_recording = fresh;
                    Decision::Answer(reshape(a, sh))
                }
                None => Decision::Answer(a),
            },
            d => d,
        }
    }

    /// What the cassette says about the credentials a token request presents: a secret it saw
    /// refused is refused with the platform's recorded answer, one it saw accepted is accepted, a
    /// secret it never saw for an identity it saw accepted is a wrong one.
    fn evidence_for(
        &self,
        call: &Call<'_>,
        params: &HashMap<String, String>,
        basic: Option<&(String, String)>,
        ev: &Evidence<'_>,
    ) -> Verdict {
        let live = presented_by(call.platform(), params, basic);
        let tokens = ev.recorded.tokens();
        let mut accepted: Option<Answer> = None;
        for p in &live {
            let Some(secret) = &p.secret else { continue };
            let seen: Vec<(&RecordedToken, &str)> = tokens
                .iter()
                .filter(|t| t.host == call.host)
                .flat_map(|t| {
                    t.credentials
                        .iter()
                        .filter(|c| c.role == p.role && c.id == p.id)
                        .filter_map(move |c| c.verifier.as_deref().map(|v| (t, v)))
                })
                .collect();
            if seen.is_empty() {
                continue;
            }
            match seen.iter().find(|(_, v)| crate::cassette::verifier::check(v, secret) == Some(true)) {
                Some((t, _)) if t.answer.status >= 400 => {
                    let detail = format!("recorded-refusal:{}:#{}", p.role, t.seq);
                    return Verdict::Refuse(Answer { detail, ..t.answer.clone() });
                }
                Some((t, _)) => {
                    accepted.get_or_insert_with(|| t.answer.clone());
                }
                None if seen.iter().any(|(t, _)| t.answer.status < 300) => {
                    // An identity the recording shows accepted with another secret: this one is wrong.
                    return Verdict::Refuse(self.wrong_secret(call, p.role, &tokens, ev.recorded));
                }
                None => {}
            }
        }
        if let Some(a) = accepted {
            return Verdict::Accept(a);
        }
        match ev.peek().filter(|p| p.fresh) {
            // Nothing to tell secrets apart by (a cassette recorded before verifiers): the platform's
            // answer at this point of the recording stands.
            Some(p) if p.exchange.response.status >= 400 => Verdict::FollowCassette,
            _ => Verdict::Unknown,
        }
    }

    /// The refusal of a wrong secret: the platform's own, when the cassette shows one for this kind
    /// of credential on this host, else one in its shape.
    fn wrong_secret(&self, call: &Call<'_>, role: &str, tokens: &[RecordedToken], recorded: &Recorded) -> Answer {
        let detail = format!("wrong-secret:{role}");
        if let Some(t) = tokens
            .iter()
            .find(|t| t.host == call.host && t.answer.status >= 400 && t.credentials.iter().any(|c| c.role == role))
        {
            return Answer { detail, ..t.answer.clone() };
        }
        let platform = call.platform();
        let ours = match role {
            "access-key" => token_error(platform, 401, "invalid_grant", "invalid access key", &detail),
            "user" => token_error(platform, 400, "invalid_grant", "invalid username or password", &detail),
            _ => token_error(platform, 400, "invalid_client", "authentication failed", &detail),
        };
        self.refusal(recorded, ours)
    }

    /// A token request by the rules of the platform (and the configured client list, unless the
    /// recording showed these credentials `accepted`); tokens live `ttl_s` when the recording
    /// shows how long.
    #[allow(clippy::too_many_arguments)]
    fn grant(
        &self,
        call: &Call<'_>,
        ctx: &mut Ctx,
        recorded: &Recorded,
        params: &HashMap<String, String>,
        basic: Option<(String, String)>,
        accepted: bool,
        ttl: Option<i64>,
    ) -> Decision {
        let platform = call.platform();
        let (client_id, secret) = match &basic {
            Some((id, s)) => (id.clone(), Some(s.clone())),
            None => (params.get("client_id").cloned().unwrap_or_default(), params.get("client_secret").cloned()),
        };
        let err = |status: u16, error: &str, description: &str, detail: &str| {
            Decision::Answer(self.refusal(recorded, token_error(platform, status, error, description, detail)))
        };
        let answer = |r: Result<Issue, Answer>| match r {
            Ok(i) => Decision::Answer(i.answer()),
            Err(a) => Decision::Answer(a),
        };
        let client_check =
            |id: &str, secret: Option<&str>| if accepted { ClientCheck::Ok } else { self.client_check(id, secret) };
        let client_refused = |check: ClientCheck| match check {
            ClientCheck::BadSecret => err(400, "invalid_client", "authentication failed", "invalid-client"),
            _ => err(400, "invalid_client", "client not found", "invalid-client"),
        };
        let grant = params.get("grant_type").cloned().unwrap_or_default();
        let now = ctx.now_ms;
        match grant.as_str() {
            "client_credentials" => {
                if !accepted && basic.is_none() && secret.is_none() {
                    return err(400, "invalid_client", "client not found", "invalid-client");
                }
                match client_check(&client_id, secret.as_deref()) {
                    ClientCheck::Ok => {}
                    c => return client_refused(c),
                }
                let mut st = self.state();
                answer(self.issue(
                    &mut st,
                    &client_id,
                    platform,
                    call.host,
                    &grant,
                    platform == Platform::Nice,
                    now,
                    ttl,
                ))
            }
            "password" if platform == Platform::Nice => {
                // NICE access keys: the key id and secret travel as username and password.
                let key_id = params.get("username").cloned().unwrap_or_default();
                let key_secret = params.get("password").cloned().unwrap_or_default();
                if key_id.is_empty() || key_secret.is_empty() {
                    return err(400, "invalid_request", "username and password are required", "invalid-request");
                }
                if basic.is_some() || !client_id.is_empty() {
                    if let c @ (ClientCheck::Unknown | ClientCheck::BadSecret) =
                        client_check(&client_id, secret.as_deref())
                    {
                        return client_refused(c);
                    }
                }
                match client_check(&key_id, Some(&key_secret)) {
                    ClientCheck::Ok => {}
                    _ => return err(401, "invalid_grant", "invalid access key", "invalid-access-key"),
                }
                let mut st = self.state();
                answer(self.issue(&mut st, &key_id, platform, call.host, &grant, true, now, ttl))
            }
            "authorization_code" => {
                self.code_grant(call, params, &client_id, secret.as_deref(), basic.is_some(), ctx, recorded, ttl)
            }
            "refresh_token" => {
                self.refresh(call, &client_id, secret.as_deref(), basic.is_some(), params, ctx, recorded, ttl)
            }
            "urn:ietf:params:oauth:grant-type:token-exchange" if platform == Platform::Nice => {
                let subject = params.get("subject_token").cloned().unwrap_or_default();
                let mut st = self.state();
                let owner = st
                    .tokens
                    .get(&subject)
                    .filter(|t| t.kind == Kind::Access && !t.revoked && t.expires_ms > now)
                    .map(|t| t.client_id.to_string());
                match owner {
                    Some(c) => answer(self.issue(&mut st, &c, platform, call.host, &grant, true, now, ttl)),
                    None => err(400, "invalid_grant", "subject_token is invalid or expired", "invalid-grant"),
                }
            }
            "" => err(400, "invalid_request", "grant_type is required", "invalid-request"),
            other => err(
                400,
                "unsupported_grant_type",
                &format!("grant type {other} is not supported"),
                "unsupported-grant-type",
            ),
        }
    }

    /// The authorization-code grant, with or without PKCE.
    #[allow(clippy::too_many_arguments)]
    fn code_grant(
        &self,
        call: &Call<'_>,
        params: &HashMap<String, String>,
        client_id: &str,
        secret: Option<&str>,
        confidential: bool,
        ctx: &Ctx,
        recorded: &Recorded,
        ttl: Option<i64>,
    ) -> Decision {
        let platform = call.platform();
        let err = |status: u16, error: &str, description: &str, detail: &str| {
            Decision::Answer(self.refusal(recorded, token_error(platform, status, error, description, detail)))
        };
        let verifier = params.get("code_verifier");
        if client_id.is_empty() || (!confidential && verifier.is_none()) {
            return err(400, "invalid_client", "client not found", "invalid-client");
        }
        match self.client_check(client_id, if confidential { secret } else { None }) {
            ClientCheck::Ok => {}
            ClientCheck::BadSecret if !confidential => {}
            ClientCheck::BadSecret => return err(400, "invalid_client", "authentication failed", "invalid-client"),
            ClientCheck::Unknown => return err(400, "invalid_client", "client not found", "invalid-client"),
        }
        let now = ctx.now_ms;
        let mut st = self.state();
        let Some(code) = params.get("code").and_then(|c| st.codes.remove(c)) else {
            return err(400, "invalid_grant", "authorization code not found or already used", "invalid-grant");
        };
        if code.expires_ms <= now || code.client_id != client_id {
            return err(
                400,
                "invalid_grant",
                "authorization code expired or issued to another client",
                "invalid-grant",
            );
        }
        if let (Some(want), Some(got)) = (&code.redirect_uri, params.get("redirect_uri")) {
            if want != got {
                return err(
                    400,
                    "invalid_grant",
                    "redirect_uri does not match the authorization request",
                    "invalid-grant",
                );
            }
        }
        match (&code.challenge, verifier) {
            (Some((method, challenge)), Some(v)) => {
                let computed = if method.eq_ignore_ascii_case("plain") { v.clone() } else { s256(v) };
                if &computed != challenge {
                    return err(
                        400,
                        "invalid_grant",
                        "code_verifier does not match the code_challenge",
                        "invalid-grant",
                    );
                }
            }
            (Some(_), None) => return err(400, "invalid_grant", "code_verifier is required", "invalid-grant"),
            (None, Some(_)) => {
                return err(
                    400,
                    "invalid_grant",
                    "no code_challenge was sent with the authorization request",
                    "invalid-grant",
                )
            }
            (None, None) => {}
        }
        match self.issue(&mut st, client_id, platform, call.host, "authorization_code", true, now, ttl) {
            Ok(i) => Decision::Answer(i.answer()),
            Err(a) => Decision::Answer(a),
        }
    }

    /// A refresh-token grant: rotation, reuse rejection, and the concurrency rule.
    #[allow(clippy::too_many_arguments)]
    fn refresh(
        &self,
        call: &Call<'_>,
        client_id: &str,
        secret: Option<&str>,
        confidential: bool,
        params: &HashMap<String, String>,
        ctx: &mut Ctx,
        recorded: &Recorded,
        ttl: Option<i64>,
    ) -> Decision {
        let platform = call.platform();
        let err = |status: u16, error: &str, description: &str, detail: &str| {
            Decision::Answer(self.refusal(recorded, token_error(platform, status, error, description, detail)))
        };
        let now = ctx.now_ms;
        let Some(presented) = params.get("refresh_token").filter(|r| !r.is_empty()) else {
            return err(400, "invalid_request", "refresh_token is required", "invalid-request");
        };
        let mut st = self.state();
        // A public client may send no client id: the token names its client.
        let owner = st.tokens.get(presented.as_str()).map(|t| t.client_id.to_string());
        let client = if client_id.is_empty() { owner.clone().unwrap_or_default() } else { client_id.to_string() };
        if confidential {
            match self.client_check(&client, secret) {
                ClientCheck::Ok => {}
                ClientCheck::BadSecret => return err(400, "invalid_client", "authentication failed", "invalid-client"),
                ClientCheck::Unknown => return err(400, "invalid_client", "client not found", "invalid-client"),
            }
        }
        if let Some(&until) = st.refreshing.get(&client) {
            if until > now {
                return match self.cfg.concurrent_refresh {
                    ConcurrentRefresh::Queue => Decision::RetryAt(until),
                    ConcurrentRefresh::Reject => err(
                        409,
                        "refresh_in_progress",
                        "a token refresh for this client is already in progress",
                        "concurrent-refresh",
                    ),
                };
            }
            st.refreshing.remove(&client);
        }
        let valid = st
            .tokens
            .get(presented.as_str())
            .is_some_and(|t| t.kind == Kind::Refresh && !t.revoked && t.expires_ms > now && *t.client_id == *client);
        if !valid {
            return err(400, "invalid_grant", "refresh token is invalid, expired or already used", "refresh-rejected");
        }
        if let Some(t) = st.tokens.get_mut(presented.as_str()) {
            t.revoked = true;
        }
        let mut answer = match self.issue(&mut st, &client, platform, call.host, "refresh_token", true, now, ttl) {
            Ok(i) => i.answer(),
            Err(a) => return Decision::Answer(a),
        };
        if self.cfg.refresh_delay_ms > 0 {
            let until = now + self.cfg.refresh_delay_ms as i64;
            st.refreshing.insert(client, until);
            answer.not_before_ms = Some(until);
        }
        Decision::Answer(answer)
    }

    /// `GET /oauth/authorize` (Genesys) or `/auth/authorize` (NICE): answered at once with the
    /// redirect a signed-in user would get, so the code and implicit grants work headless.
    fn authorize(&self, call: &Call<'_>, ctx: &Ctx) -> Decision {
        let platform = call.platform();
        let q = form(call.query.unwrap_or(""));
        let bad = |error: &str, description: &str| {
            Decision::Answer(token_error(platform, 400, error, description, "authorize-refused"))
        };
        let client_id = q.get("client_id").cloned().unwrap_or_default();
        let Some(redirect) = q.get("redirect_uri").filter(|r| !r.is_empty()).cloned() else {
            return bad("invalid_request", "redirect_uri is required");
        };
        if self.client_check(&client_id, None) == ClientCheck::Unknown {
            return bad("invalid_client", "client not found");
        }
        let state = q.get("state");
        let sep = if redirect.contains('?') { '&' } else { '?' };
        let enc = crate::cassette::redact::percent_encode;
        let with_state = |mut l: String| {
            if let Some(s) = state {
                l.push_str(&format!("&state={}", enc(s)));
            }
            l
        };
        let location = match q.get("response_type").map(String::as_str).unwrap_or("code") {
            "code" => {
                let code = URL_SAFE_NO_PAD.encode(self.ids.bytes(24));
                let challenge = q
                    .get("code_challenge")
                    .map(|c| (q.get("code_challenge_method").cloned().unwrap_or_else(|| "plain".into()), c.clone()));
                self.state().codes.insert(
                    code.clone(),
                    Code {
                        client_id,
                        redirect_uri: Some(redirect.clone()),
                        challenge,
                        expires_ms: ctx.now_ms + CODE_TTL_MS,
                    },
                );
                with_state(format!("{redirect}{sep}code={}", enc(&code)))
            }
            "token" if platform == Platform::Genesys => {
                let mut st = self.state();
                let i = match self.issue(&mut st, &client_id, platform, call.host, "implicit", false, ctx.now_ms, None)
                {
                    Ok(i) => i,
                    Err(a) => return Decision::Answer(a),
                };
                with_state(format!(
                    "{redirect}#access_token={}&token_type=bearer&expires_in={}",
                    enc(&i.access),
                    i.expires_in
                ))
            }
            other => return bad("unsupported_response_type", &format!("response type {other} is not supported")),
        };
        Decision::Answer(Answer {
            status: 302,
            headers: vec![("location".into(), location)],
            body: bytes::Bytes::new(),
            detail: "authorize-redirect".into(),
            not_before_ms: None,
            basis: super::Basis::Run,
        })
    }

    fn nice_discovery(&self, call: &Call<'_>) -> Decision {
        let iss = format!("https://{}", call.host);
        Decision::Answer(Answer::json(
            200,
            &json!({
                "issuer": iss,
                "authorization_endpoint": format!("{iss}/auth/authorize"),
                "token_endpoint": format!("{iss}/auth/token"),
                "userinfo_endpoint": format!("{iss}/auth/userinfo"),
                "jwks_uri": format!("{iss}/auth/jwks"),
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
                "end_session_endpoint": format!("{iss}/auth/authorize/logout"),
                "scopes_supported": ["openid"],
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "request_object_signing_alg_values_supported": ["none"],
                "display_values_supported": ["page", "popup"],
                "claim_types_supported": ["normal"],
                "code_challenge_methods_supported": ["S256"],
            }),
            "discovery",
        ))
    }

    fn nice_jwks(&self) -> Decision {
        match self.nice_signer() {
            Ok(s) => {
                Decision::Answer(Answer::json(200, &json!({"keys": s.jwk().into_iter().collect::<Vec<_>>()}), "jwks"))
            }
            Err(a) => Decision::Answer(a),
        }
    }
}

/// Whether a client id and secret are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientCheck {
    Ok,
    Unknown,
    BadSecret,
}

/// Tokens just issued.
struct Issue {
    platform: Platform,
    access: String,
    refresh: Option<String>,
    id_token: Option<String>,
    expires_in: i64,
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

/// A token endpoint's error in the platform's shape.
fn token_error(platform: Platform, status: u16, error: &str, description: &str, detail: &str) -> Answer {
    Answer::json(status, &platform.token_error(error, description), detail)
}

/// The user and tenant a NICE access key stands for: derived from the key id, so the same key is
/// always the same user.
struct NiceIdentity {
    user_id: String,
    tenant_id: String,
    bu_id: i64,
    aud: String,
}

impl NiceIdentity {
    fn of(client_id: &str) -> NiceIdentity {
        let h = ring::digest::digest(&ring::digest::SHA256, client_id.as_bytes());
        let b = h.as_ref();
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        NiceIdentity {
            user_id: super::ids::uuid_from(word(0), word(8)),
            tenant_id: super::ids::uuid_from(word(16), word(24)),
            bu_id: 4_000_000 + (word(0) % 1_000_000) as i64,
            aud: "CXone".into(),
        }
    }

    fn claims(&self, iss: &str, iat: i64, exp: i64) -> Value {
        json!({
            "sub": format!("user:{}", self.user_id),
            "iss": iss,
            "aud": self.aud,
            "userId": self.user_id,
            "tenantId": self.tenant_id,
            "tenant": "callvcr",
            "icBUId": self.bu_id,
            "icClusterId": "B32",
            "icDomain": "nice-incontact.com",
            "name": "callvcr user",
            "given_name": "callvcr",
            "family_name": "user",
            "iat": iat,
            "exp": exp,
        })
    }
}

impl Overlay for Auth {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn on_request(&self, call: &Call<'_>, ctx: &mut Ctx, ev: &Evidence<'_>) -> Decision {
        let recorded = ev.recorded;
        match call.platform().auth_route(call.host, call.method, call.path) {
            Some(Route::Token) => return self.token_request(call, ctx, ev, false),
            Some(Route::AccessKey) => return self.token_request(call, ctx, ev, true),
            Some(Route::Authorize) => return self.authorize(call, ctx),
            Some(Route::Discovery) => return self.nice_discovery(call),
            Some(Route::Jwks) => return self.nice_jwks(),
            None => {}
        }
        if is_api_call(call) {
            return self.check_bearer(call, ctx, recorded);
        }
        Decision::Continue
    }

    fn owns(&self, host: &str, path: &str) -> bool {
        Platform::of_host(host).auth_route(host, "", path).is_some()
    }

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
