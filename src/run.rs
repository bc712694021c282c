//! `callvcr run`: the child side. Builds the environment that makes a command trust callvcr and go
//! through it (proxy variables, CA bundles per runtime), optionally a private hosts file for a
//! mount namespace, and runs the command. Decides nothing about recording or replay.

use std::path::{Path, PathBuf};

pub(crate) use crate::server::Addrs;

/// Places system root bundles usually live (Debian/Ubuntu, Fedora/RHEL, Alpine, macOS with OpenSSL).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
];

/// Writes `certs/bundle.pem`: the system's roots followed by callvcr's CA, for runtimes that take one
/// file (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`). Returns its path and the system
/// bundle used, if one was found.
pub(crate) fn write_bundle(certs: &Path) -> Result<(PathBuf, Option<PathBuf>), String> {
    let ca_path = certs.join(crate::tls::CA_CERT_FILE);
    let ca = std::fs::read(&ca_path).map_err(|e| format!("cannot read {}: {e}", ca_path.display()))?;
    let system = SYSTEM_BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file());
    let mut out = match &system {
        Some(p) => std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        None => Vec::new(),
    };
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(b"# callvcr local CA (name-constrained to the platform domains)\n");
    out.extend_from_slice(&ca);
    let path = certs.join("bundle.pem");
    std::fs::write(&path, out).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((path, system))
}

/// The environment a child gets: proxy variables that send HTTPS through callvcr (and keep the
/// admin API direct), and CA settings for each runtime. With the hosts-file redirect there are no
/// proxy variables: the hosts file alone brings the child to callvcr, as it would a user's SDK.
pub(crate) fn child_env(addrs: &Addrs, ca: &Path, bundle: &Path, redirect: &str) -> Vec<(String, String)> {
    let proxy = format!("http://{}", addrs.proxy);
    let admin = format!("http://{}", addrs.admin);
    let no_proxy = "127.0.0.1,localhost,::1".to_string();
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    let proxied = if redirect == "hosts" {
        vec![]
    } else {
        vec![("HTTPS_PROXY".into(), proxy.clone()), ("https_proxy".into(), proxy.clone())]
    };
    proxied
        .into_iter()
        .chain([
            ("NO_PROXY".into(), no_proxy.clone()),
            ("no_proxy".into(), no_proxy),
            ("SSL_CERT_FILE".into(), abs(bundle)),
            ("REQUESTS_CA_BUNDLE".into(), abs(bundle)),
            ("CURL_CA_BUNDLE".into(), abs(bundle)),
            ("NODE_EXTRA_CA_CERTS".into(), abs(ca)),
            ("CALLVCR_CA".into(), abs(ca)),
            ("CALLVCR_PROXY".into(), proxy),
            ("CALLVCR_ADMIN".into(), admin),
            ("CALLVCR_REDIRECT".into(), redirect.into()),
        ])
        .collect()
}

/// Writes a hosts file: the machine's own lines, then one line pointing `names` at 127.0.0.1.
pub(crate) fn write_hosts(names: &[String], out: &Path) -> Result<(), String> {
    let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| "127.0.0.1 localhost\n".into());
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# callvcr run --hosts: these names go to callvcr\n");
    text.push_str(&format!("127.0.0.1 {}\n", names.join(" ")));
    std::fs::write(out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))
}

/// The command to run: as given, or (with `hosts`) inside a private mount namespace where
/// `/etc/hosts` is that file. Linux only, and needs root (or CAP_SYS_ADMIN).
pub(crate) fn command(cmd: &[String], hosts: Option<&Path>) -> Result<tokio::process::Command, String> {
    let (prog, args) = cmd.split_first().ok_or("no command given: put it after `--`")?;
    match hosts {
        None => {
            let mut c = tokio::process::Command::new(prog);
            c.args(args);
            Ok(c)
        }
        Some(h) => {
            if !cfg!(target_os = "linux") {
                return Err("--hosts needs Linux (a private mount namespace); use HTTPS_PROXY on this system".into());
            }
            let mut c = tokio::process::Command::new("unshare");
            c.args(["-m", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\""]).arg(h).arg(prog).args(args);
            Ok(c)
        }
    }
}

/// The exit code `run` ends with: the command's own when it failed, else callvcr's (1 on strict
/// failures).
pub(crate) fn exit_code(child: Option<i32>, callvcr: i32) -> i32 {
    match child {
        Some(c) if c != 0 => c,
        Some(_) => callvcr,
        // Killed by a signal, or never started: a failure either way.
        None => callvcr.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_failure_wins_then_strict_failures() {
        assert_eq!(exit_code(Some(0), 0), 0);
        assert_eq!(exit_code(Some(3), 0), 3);
        assert_eq!(exit_code(Some(3), 1), 3);
        assert_eq!(exit_code(Some(0), 1), 1);
        assert_eq!(exit_code(None, 0), 1);
    }

    #[test]
    fn the_environment_sends_https_through_callvcr_and_keeps_the_admin_api_direct() {
        let a = Addrs {
            tls: "127.0.0.1:1".parse().unwrap(),
            proxy: "127.0.0.1:2".parse().unwrap(),
            admin: "127.0.0.1:3".parse().unwrap(),
        };
        let env = child_env(&a, Path::new("/c/ca.pem"), Path::new("/c/bundle.pem"), "proxy");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:2"));
        assert_eq!(get("CALLVCR_ADMIN"), Some("http://127.0.0.1:3"));
        assert!(get("NO_PROXY").unwrap().contains("127.0.0.1"));
        assert_eq!(get("NODE_EXTRA_CA_CERTS"), Some("/c/ca.pem"));
        assert_eq!(get("REQUESTS_CA_BUNDLE"), Some("/c/bundle.pem"));
        assert!(get("HTTP_PROXY").is_none(), "plain HTTP (the admin API) is never proxied");
        // The hosts-file redirect is tested alone: no proxy to fall back on.
        let hosts = child_env(&a, Path::new("/c/ca.pem"), Path::new("/c/bundle.pem"), "hosts");
        assert!(hosts.iter().all(|(k, _)| !k.eq_ignore_ascii_case("https_proxy")), "{hosts:?}");
        assert!(hosts.iter().any(|(k, v)| k == "CALLVCR_REDIRECT" && v == "hosts"));
    }
}
