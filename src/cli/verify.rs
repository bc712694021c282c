//! `callvcr verify`: the flags, the configuration and the credentials from the environment (never
//! from a flag or a file), the run itself (`crate::verify`), the report printed and written, the
//! `--update` cassette, and the exit code: 0, 1 with `--fail-on-drift` when anything drifted or
//! could not be verified, 2 for bad usage or configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{fail, load_config, parse_resolve, EXIT_OK, EXIT_STRICT, EXIT_USAGE};
use crate::cassette::model::Cassette;
use crate::cassette::{Matcher, Redactor, Store};
use crate::config::{CredentialVars, VerifyConfig};
use crate::upstream::{Upstream, UpstreamOptions};
use crate::verify::compare::Rules;
use crate::verify::live::{self, Options};
use crate::verify::plan;
use crate::verify::session::{Credentials, Session};

/// `callvcr verify` flags.
#[derive(Args, Debug)]
pub(super) struct VerifyArgs {
    /// Cassette name, or a `.jsonl` / `.har` file.
    #[arg(long)]
    cassette: String,
    /// Also send the requests that change the sandbox (POST, PUT, PATCH, DELETE other than
    /// sign-ins and notification channels); without it they are skipped, and the report lists them.
    #[arg(long)]
    mutations: bool,
    /// The report as `text` (default) or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    /// Also write the report to FILE (e.g. beside the cassette: cassettes/NAME.verify.json).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Exit 1 when anything drifted or could not be verified.
    #[arg(long = "fail-on-drift")]
    fail_on_drift: bool,
    /// Write a new cassette (NAME-verified, or --into): the live answers of the exchanges that
    /// drifted, the recorded rest.
    #[arg(long)]
    update: bool,
    /// With --update: the new cassette's name under --cassettes, or a `.jsonl` file.
    #[arg(long, value_name = "NAME|FILE", requires = "update")]
    into: Option<String>,
    /// proxy.yaml to use (default: ./proxy.yaml when present); `verify.credentials` there names
    /// the environment variables holding the sandbox credentials.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory holding cassettes.
    #[arg(long, value_name = "DIR", default_value = "cassettes")]
    cassettes: PathBuf,
    /// Extra CA (PEM) to trust upstream, for a sandbox with a private CA.
    #[arg(long = "upstream-ca", value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// Send HOST to ADDR:PORT instead of resolving it (repeatable; HOST `*` sends every host).
    #[arg(long, value_name = "HOST=ADDR:PORT")]
    resolve: Vec<String>,
}

/// The credentials the environment holds under the configured names (an empty value is none).
fn credentials(vars: &CredentialVars) -> Credentials {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Credentials {
        client_id: get(&vars.client_id),
        client_secret: get(&vars.client_secret),
        username: get(&vars.username),
        password: get(&vars.password),
        cookie: get(&vars.cookie),
    }
}

/// Refuses a run whose sign-ins need a credential the environment lacks, naming the variable
/// (never a value), or a sign-in the cassette does not hold and nothing says where to make.
fn check_needs(c: &Cassette, steps: &[plan::Step], creds: &Credentials, cfg: &VerifyConfig) -> Result<(), String> {
    let n = plan::needs(&c.exchanges, steps);
    let vars = &cfg.credentials;
    let defaults = crate::config::CredentialVars::default();
    let missing = |what: &str, var: &str, key: &str, at: String| {
        // A name of the user's own is not shown: a secret written there by mistake would reach the
        // log (a name that looks like one cannot be told from a secret made of letters and digits).
        let default =
            [&defaults.client_id, &defaults.client_secret, &defaults.username, &defaults.password, &defaults.cookie]
                .contains(&&var.to_string());
        if default {
            format!("{at} needs the {what}: set the environment variable {var} (or name another in verify.credentials.{key} in proxy.yaml)")
        } else {
            format!("{at} needs the {what}: set the environment variable that verify.credentials.{key} in proxy.yaml names (not shown here, in case a secret was written there)")
        }
    };
    if let (Some(seq), None) = (n.client_secret, &creds.client_secret) {
        return Err(missing("client secret", &vars.client_secret, "client_secret", format!("the sign-in at #{seq}")));
    }
    if let (Some(seq), None) = (n.password, &creds.password) {
        return Err(missing(
            "password (NICE: the access key secret)",
            &vars.password,
            "password",
            format!("the sign-in at #{seq}"),
        ));
    }
    for (_, host) in &n.sign_in {
        let at = format!("the cassette holds no sign-in for {host}, so verify signs in with client credentials, which");
        if creds.client_id.is_none() {
            return Err(missing("client id", &vars.client_id, "client_id", at));
        }
        if creds.client_secret.is_none() {
            return Err(missing("client secret", &vars.client_secret, "client_secret", at));
        }
        if cfg.token_url.is_none() && crate::platform::Platform::of_host(host).token_endpoint_for(host).is_none() {
            return Err(format!(
                "the cassette holds no sign-in for {host}, and callvcr knows no token endpoint for it: set verify.token_url in proxy.yaml"
            ));
        }
    }
    Ok(())
}

/// `c` with any secret the run held scrubbed from its answers (redaction already took the
/// fields it knows; this catches a secret echoed anywhere else).
fn scrubbed(mut c: Cassette, session: &Session) -> Cassette {
    for e in &mut c.exchanges {
        if let Ok(t) = std::str::from_utf8(&e.response.body.bytes) {
            let s = session.scrub(t);
            if s != t {
                e.response.body.bytes = s.into();
            }
        }
        for (_, v) in e.response.headers.iter_mut() {
            *v = session.scrub(v);
        }
    }
    for f in &mut c.frames {
        if let Ok(t) = std::str::from_utf8(&f.data.bytes) {
            let s = session.scrub(t);
            if s != t {
                f.data.bytes = s.into();
            }
        }
    }
    c
}

/// Writes the `--update` cassette to `into`: a `.jsonl` file, or a named store under `dir`.
fn write_updated(
    c: &Cassette,
    into: &str,
    dir: &std::path::Path,
    cfg: &crate::config::Config,
) -> Result<String, String> {
    let note = "Written by callvcr verify --update: the live answers of the exchanges that drifted, the recorded rest.";
    if into.ends_with(".jsonl") {
        crate::cassette::store::write_jsonl(std::path::Path::new(into), c, Some(note)).map_err(|e| e.to_string())?;
        return Ok(into.to_string());
    }
    let store = Store::open_writer(&dir.join(into), true).map_err(|e| e.to_string())?;
    store.replace_all(c).map_err(|e| e.to_string())?;
    let matcher = Matcher::new(&cfg.matching, Redactor::new(&cfg.redact));
    if let Err(e) = store.write_replay_file(&matcher, crate::overlay::analyses()) {
        tracing::warn!("no replay file written ({e}); the first replay writes it");
    }
    Ok(store.path().display().to_string())
}

/// Runs `callvcr verify`.
pub(super) async fn run(a: VerifyArgs) -> i32 {
    let mut cfg = match load_config(a.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match parse_resolve(&a.resolve) {
        Ok(list) => cfg.resolve.extend(list),
        Err(e) => return fail(e),
    }
    if let Some(ca) = &a.upstream_ca {
        cfg.upstream_extra_ca = Some(ca.clone());
    }
    let (name, cassette) = match crate::cassette::store::load(&a.cassette, &a.cassettes) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if cassette.exchanges.is_empty() {
        return fail(format!("`{name}` holds no exchanges: nothing to verify"));
    }
    let creds = credentials(&cfg.verify.credentials);
    let steps = plan::plan(&cassette.exchanges, a.mutations);
    if let Err(e) = check_needs(&cassette, &steps, &creds, &cfg.verify) {
        return fail(e);
    }
    let tls = match crate::tls::upstream_client_config(cfg.upstream_extra_ca.as_deref()) {
        Ok(t) => Arc::new(t),
        Err(e) => return fail(e),
    };
    let upstream = Upstream::new(UpstreamOptions {
        tls,
        resolve: cfg.resolve.clone(),
        connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
        timeout: Duration::from_millis(cfg.upstream_timeout_ms),
        nameservers: cfg.nameservers.clone(),
    });
    let opts = Options {
        mutations: a.mutations,
        rules: Rules::new(&cfg.matching.ignore_json_paths, cfg.verify.timing_factor, cfg.verify.timing_min_ms),
        cfg: cfg.verify.clone(),
        body_timeout: Duration::from_millis(cfg.upstream_timeout_ms),
        max_body_bytes: cfg.limits.max_body_bytes,
    };
    tracing::info!(cassette = %name, exchanges = cassette.exchanges.len(), mutations = a.mutations, "verifying against the live platform");
    let v = live::run(&name, &cassette, upstream, Redactor::new(&cfg.redact), creds, &opts).await;
    let text = if a.format == "json" {
        serde_json::to_string_pretty(&v.report).unwrap_or_default() + "\n"
    } else {
        v.report.text()
    };
    let text = v.session.scrub(&text);
    print!("{text}");
    if let Some(out) = &a.out {
        if let Err(e) = std::fs::write(out, &text) {
            return fail(format!("cannot write the report to {}: {e}", out.display()));
        }
        eprintln!("callvcr: report written to {}", out.display());
    }
    if a.update {
        let into = a.into.clone().unwrap_or_else(|| format!("{name}-verified"));
        let replaced = v.report.results.iter().filter(|r| !r.drift.is_empty()).count();
        match write_updated(&scrubbed(v.updated, &v.session), &into, &a.cassettes, &cfg) {
            Ok(path) => {
                eprintln!("callvcr: wrote {path}: {replaced} exchange(s) with their live answers, the recorded rest")
            }
            Err(e) => {
                eprintln!("callvcr: error: cannot write the updated cassette `{into}`: {e}");
                return EXIT_USAGE;
            }
        }
    }
    if a.fail_on_drift && v.report.failed() {
        return EXIT_STRICT;
    }
    EXIT_OK
}
