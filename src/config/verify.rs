//! The `verify:` section of `proxy.yaml`: where `callvcr verify` finds the sandbox credentials (the
//! names of environment variables, never their values), when a slower answer counts as drift, and
//! how long it waits for WebSocket events and rate limits. The run itself is the `verify` module's.

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

/// Names of the environment variables holding each credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialVars {
    /// The OAuth client id (`CALLVCR_CLIENT_ID`).
    pub client_id: String,
    /// The OAuth client secret (`CALLVCR_CLIENT_SECRET`).
    pub client_secret: String,
    /// A password grant's user name; on NICE CXone the access key id (`CALLVCR_USERNAME`).
    pub username: String,
    /// A password grant's password; on NICE CXone the access key secret (`CALLVCR_PASSWORD`).
    pub password: String,
    /// A session cookie the sandbox's sign-in page accepts for its test user, so the
    /// authorization-code grant completes without a browser (`CALLVCR_SIGN_IN_COOKIE`).
    pub cookie: String,
}

impl Default for CredentialVars {
    /// `CALLVCR_CLIENT_ID`, `CALLVCR_CLIENT_SECRET`, `CALLVCR_USERNAME`, `CALLVCR_PASSWORD`,
    /// `CALLVCR_SIGN_IN_COOKIE`.
    fn default() -> Self {
        CredentialVars {
            client_id: "CALLVCR_CLIENT_ID".into(),
            client_secret: "CALLVCR_CLIENT_SECRET".into(),
            username: "CALLVCR_USERNAME".into(),
            password: "CALLVCR_PASSWORD".into(),
            cookie: "CALLVCR_SIGN_IN_COOKIE".into(),
        }
    }
}

/// `verify.credentials` as written: each a variable name.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCredentialVars {
    /// Variable holding the client id.
    pub client_id: Option<Spanned<String>>,
    /// Variable holding the client secret.
    pub client_secret: Option<Spanned<String>>,
    /// Variable holding a password grant's user name (NICE: the access key id).
    pub username: Option<Spanned<String>>,
    /// Variable holding a password grant's password (NICE: the access key secret).
    pub password: Option<Spanned<String>>,
    /// Variable holding a sign-in session cookie for the headless authorization-code grant.
    pub cookie: Option<Spanned<String>>,
}

/// `verify.timing` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTiming {
    /// A live answer this many times slower than the recorded one is drift (default 3).
    pub factor: Option<Spanned<f64>>,
    /// ... and only when it is also at least this many milliseconds slower (default 500), so a
    /// fast answer's jitter is not drift.
    pub min_ms: Option<u64>,
}

/// The `verify:` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawVerify {
    /// Where the credentials are: environment variable names.
    pub credentials: RawCredentialVars,
    /// When a slower answer is drift.
    pub timing: RawTiming,
    /// How long to wait, after the last request, for the WebSocket events the recording shows (ms).
    pub ws_wait_ms: Option<u64>,
    /// How often one request is sent again after a 429 (default 3).
    pub max_retries: Option<u32>,
    /// The longest `Retry-After` honoured, in seconds (default 120); a longer one ends the retries.
    pub max_retry_after_s: Option<u64>,
    /// The token endpoint (`https://host/path`) for a client-credentials sign-in, when the
    /// cassette holds none and the platform has no known login service.
    pub token_url: Option<Spanned<String>>,
}

/// The `verify:` section, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyConfig {
    /// Where the credentials are.
    pub credentials: CredentialVars,
    /// Slower by this factor ...
    pub timing_factor: f64,
    /// ... and by this many milliseconds: timing drift.
    pub timing_min_ms: u64,
    /// The wait for recorded WebSocket events after the last request, in milliseconds.
    pub ws_wait_ms: u64,
    /// Retries of one request after a 429.
    pub max_retries: u32,
    /// The longest `Retry-After` honoured, in seconds.
    pub max_retry_after_s: u64,
    /// A token endpoint for the client-credentials sign-in: (host, path).
    pub token_url: Option<(String, String)>,
}

impl Default for VerifyConfig {
    /// The default variables; 3× and 500 ms slower is drift; 5 s for events; 3 retries of up to 120 s.
    fn default() -> Self {
        VerifyConfig {
            credentials: CredentialVars::default(),
            timing_factor: 3.0,
            timing_min_ms: 500,
            ws_wait_ms: 5_000,
            max_retries: 3,
            max_retry_after_s: 120,
            token_url: None,
        }
    }
}

/// Whether `name` can be an environment variable's name (letters, digits, `_`, not starting with
/// a digit): a value that is not is most likely a secret written where its name belongs.
fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks `verify:`; `at` places an error at a YAML position.
pub fn verify<E>(raw: &RawVerify, at: &dyn Fn(Location, String) -> E) -> Result<VerifyConfig, E> {
    let mut out = VerifyConfig::default();
    let c = &raw.credentials;
    let slots: [(&str, &Option<Spanned<String>>, &mut String); 5] = [
        ("client_id", &c.client_id, &mut out.credentials.client_id),
        ("client_secret", &c.client_secret, &mut out.credentials.client_secret),
        ("username", &c.username, &mut out.credentials.username),
        ("password", &c.password, &mut out.credentials.password),
        ("cookie", &c.cookie, &mut out.credentials.cookie),
    ];
    for (key, given, slot) in slots {
        let Some(v) = given else { continue };
        if !is_var_name(&v.value) {
            // The value is not echoed: it may be the secret itself.
            return Err(at(
                v.referenced,
                format!(
                    "verify.credentials.{key}: not an environment variable name; this file names the variable \
                     that holds the credential (e.g. {key}: MY_SANDBOX_{}), never the credential itself",
                    key.to_ascii_uppercase()
                ),
            ));
        }
        *slot = v.value.clone();
    }
    if let Some(f) = &raw.timing.factor {
        if !(f.value.is_finite() && f.value >= 1.0) {
            return Err(at(
                f.referenced,
                format!("verify.timing.factor: `{}` must be a number of at least 1", f.value),
            ));
        }
        out.timing_factor = f.value;
    }
    out.timing_min_ms = raw.timing.min_ms.unwrap_or(out.timing_min_ms);
    out.ws_wait_ms = raw.ws_wait_ms.unwrap_or(out.ws_wait_ms);
    out.max_retries = raw.max_retries.unwrap_or(out.max_retries);
    out.max_retry_after_s = raw.max_retry_after_s.unwrap_or(out.max_retry_after_s);
    if let Some(u) = &raw.token_url {
        let parsed = u.value.strip_prefix("https://").and_then(|rest| {
            let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
            (!host.is_empty()).then(|| (host.to_ascii_lowercase(), path))
        });
        out.token_url = Some(parsed.ok_or_else(|| {
            at(
                u.referenced,
                format!(
                    "verify.token_url: `{}` is not an https URL (expected e.g. https://login.example.com/oauth/token)",
                    u.value
                ),
            )
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_are_names() {
        assert!(is_var_name("CALLVCR_CLIENT_SECRET") && is_var_name("_x1"));
        assert!(!is_var_name("s3cr3t-value") && !is_var_name("1ABC") && !is_var_name(""));
    }
}
