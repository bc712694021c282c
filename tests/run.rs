//! `callvcr run` through the real binary: exit codes, the environment reaching the command, traffic
//! from the command going through callvcr, and `--hosts` in a private mount namespace.

mod support;

use std::path::Path;

use support::*;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cassettes/demo.jsonl");

/// A Python child: logs in and reads users/me through HTTPS_PROXY (urllib follows it, OpenSSL trusts
/// SSL_CERT_FILE), writes what it saw to `out`, and exits with `exit`.
fn child(dir: &Path, path: &str, exit: i32) -> String {
    let script = format!(
        r#"
import json, os, sys, urllib.request, base64
env = {{k: os.environ.get(k) for k in ["HTTPS_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CALLVCR_ADMIN", "CALLVCR_REDIRECT", "NO_PROXY"]}}
req = urllib.request.Request("https://login.mypurecloud.com/oauth/token", data=b"grant_type=client_credentials",
    headers={{"Authorization": "Basic " + base64.b64encode(b"c:s").decode(), "Content-Type": "application/x-www-form-urlencoded"}})
token = json.load(urllib.request.urlopen(req))["access_token"]
try:
    r = urllib.request.urlopen(urllib.request.Request("https://api.mypurecloud.com{path}", headers={{"Authorization": "Bearer " + token}}))
    status, body = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read().decode()
health = json.load(urllib.request.urlopen(os.environ["CALLVCR_ADMIN"] + "/mock/admin/health"))
json.dump({{"env": env, "status": status, "body": body, "health": health}}, open("out.json", "w"))
sys.exit({exit})
"#
    );
    let p = dir.join("child.py");
    std::fs::write(&p, script).unwrap();
    p.display().to_string()
}

fn out(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("out.json")).expect("the command wrote its report")).unwrap()
}

#[test]
fn the_command_runs_through_callvcr_with_its_environment_and_its_status_is_the_exit_code() {
    let dir = tempdir("run-ok");
    let script = child(&dir, "/api/v2/users/me", 0);
    let (code, _, err) = run(&dir, &["run", "--cassette", DEMO, "--strict", "--", "python3", &script]);
    assert_eq!(code, 0, "{err}");
    let o = out(&dir);
    assert_eq!(o["status"], 200, "{o}");
    assert!(o["body"].as_str().unwrap().contains("Agent Smith"), "{o}");
    assert_eq!(o["health"]["mode"], "replay");
    let env = &o["env"];
    assert!(env["HTTPS_PROXY"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{env}");
    assert!(env["NO_PROXY"].as_str().unwrap().contains("127.0.0.1"));
    assert_eq!(env["CALLVCR_REDIRECT"], "proxy");
    assert!(env["NODE_EXTRA_CA_CERTS"].as_str().unwrap().ends_with("certs/ca.pem"));
    let bundle = std::fs::read_to_string(env["SSL_CERT_FILE"].as_str().unwrap()).unwrap();
    let ca = std::fs::read_to_string(dir.join("certs/ca.pem")).unwrap();
    assert!(bundle.contains(ca.trim()), "the bundle holds callvcr's CA");
    assert_eq!(env["REQUESTS_CA_BUNDLE"], env["SSL_CERT_FILE"]);
    assert!(err.contains("replay summary"), "callvcr stopped and summarised: {err}");
}

#[test]
fn a_failing_command_exits_with_its_own_status_and_strict_misses_exit_1() {
    let dir = tempdir("run-codes");
    let script = child(&dir, "/api/v2/users/me", 7);
    let (code, _, err) = run(&dir, &["run", "--cassette", DEMO, "--strict", "--", "python3", &script]);
    assert_eq!(code, 7, "the command's own status: {err}");

    let script = child(&dir, "/api/v2/never/recorded", 0);
    let (code, _, err) = run(&dir, &["run", "--cassette", DEMO, "--strict", "--", "python3", &script]);
    assert_eq!(out(&dir)["status"], 404);
    assert_eq!(code, 1, "the command succeeded but the strict replay missed: {err}");
    assert!(err.contains("strict replay failed"), "{err}");

    let (code, _, _) = run(&dir, &["run", "--cassette", DEMO, "--", "python3", &script]);
    assert_eq!(code, 0, "without --strict a miss is not a failure");

    let (code, _, err) = run(&dir, &["run", "--cassette", DEMO, "--", "/no/such/program"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("cannot run `/no/such/program`"), "{err}");

    let (code, _, err) = run(&dir, &["run", "--cassette", DEMO]);
    assert_eq!(code, 2, "no command is a usage error: {err}");
}

/// Whether this process may make a private mount namespace (root, and unshare works).
fn can_unshare() -> bool {
    std::process::Command::new("unshare").args(["-m", "true"]).status().map(|s| s.success()).unwrap_or(false)
}

#[test]
fn hosts_redirects_the_command_in_a_private_namespace_and_leaves_the_machine_alone() {
    if !can_unshare() {
        eprintln!("SKIPPED: needs root and unshare (a private mount namespace); CI runs as root");
        return;
    }
    let before = std::fs::read_to_string("/etc/hosts").unwrap();
    let dir = tempdir("run-hosts");
    let script = dir.join("resolve.py");
    std::fs::write(
        &script,
        r#"
import json, os, socket, ssl, urllib.request, base64
# No proxy: the hosts file alone must bring the SDK to callvcr.
for k in ["HTTPS_PROXY", "https_proxy"]:
    os.environ.pop(k, None)
addr = socket.gethostbyname("api.mypurecloud.com")
ctx = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
req = urllib.request.Request("https://login.mypurecloud.com/oauth/token", data=b"grant_type=client_credentials",
    headers={"Authorization": "Basic " + base64.b64encode(b"c:s").decode()})
token = json.load(opener.open(req))["access_token"]
me = opener.open(urllib.request.Request("https://api.mypurecloud.com/api/v2/users/me", headers={"Authorization": "Bearer " + token})).read().decode()
json.dump({"addr": addr, "me": me, "redirect": os.environ["CALLVCR_REDIRECT"], "hosts": open("/etc/hosts").read()}, open("out.json", "w"))
"#,
    )
    .unwrap();
    let (code, _, err) =
        run(&dir, &["run", "--hosts", "--cassette", DEMO, "--strict", "--", "python3", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let o = out(&dir);
    assert_eq!(o["addr"], "127.0.0.1");
    assert!(o["me"].as_str().unwrap().contains("Agent Smith"), "{o}");
    assert_eq!(o["redirect"], "hosts");
    assert!(o["hosts"].as_str().unwrap().contains("login.mypurecloud.com"), "the namespace's hosts file");
    assert_eq!(std::fs::read_to_string("/etc/hosts").unwrap(), before, "the machine's /etc/hosts is unchanged");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempdir("run-json");
    let (code, _, err) = run(&dir, &["--log-format", "json", "run", "--cassette", DEMO, "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let logs: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(logs.len() >= 3, "{err}");
    assert!(logs.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()), "{err}");
    assert!(logs.iter().any(|l| l["fields"]["message"].as_str().unwrap_or("").contains("callvcr ready")), "{err}");
    // Every line but the closing summary is a log object.
    let other: Vec<&str> = err.lines().filter(|l| !l.starts_with('{') && !l.trim().is_empty()).collect();
    assert!(other.iter().all(|l| l.starts_with("callvcr: replay summary")), "{other:?}");
}

#[test]
fn on_a_terminal_a_status_line_shows_the_counters() {
    // `script` gives callvcr a pseudo-terminal, as an interactive user's shell would.
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: needs `script` (util-linux) for a pseudo-terminal");
        return;
    }
    let dir = tempdir("run-tty");
    let bin = env!("CARGO_BIN_EXE_callvcr");
    // The wrapped command must run for a while (the status line is drawn as time passes): its
    // pause is the behaviour, not a wait.
    let cmd = format!("{bin} run --cassette {DEMO} -- sleep 1.2");
    let out =
        std::process::Command::new("script").args(["-qfec", &cmd, "/dev/null"]).current_dir(&dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("[callvcr replay] hits 0 · misses 0 · recorded 0 · upstream errors 0"), "{text}");
}
