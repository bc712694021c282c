//! Replays of one stored cassette started together, through the real binary: one writes the
//! replay file under an OS lock, the others wait for it and read it; a replay killed while writing
//! leaves nothing stale; a recording holding the store is refused at once, by pid.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const ME: &str = r#"{"id":"u-1","name":"Agent Smith"}"#;
const H: [(&str, &str); 1] = [("host", "api.mypurecloud.com")];

/// A stored cassette `t` holding `extra` filler exchanges besides `users/me`, with no replay file.
fn stored(dir: &Path, extra: usize) {
    let mut recs: Vec<(String, String)> = vec![("/api/v2/users/me".into(), ME.into())];
    recs.extend(
        (0..extra).map(|i| (format!("/api/v2/filler/{i}"), format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(64)))),
    );
    let rows: Vec<Rec<'_>> =
        recs.iter().map(|(p, b)| ("GET", "api.mypurecloud.com", p.as_str(), "", 200, b.as_str())).collect();
    write_cassette(dir, "t.jsonl", &rows);
    let (code, _, err) = run(dir, &["cassette", "import", "t.jsonl", "--name", "t"]);
    assert_eq!(code, 0, "{err}");
    remove_replay_file(dir);
}

fn remove_replay_file(dir: &Path) {
    let f = dir.join("cassettes/t/replay.bin");
    std::fs::remove_file(&f).unwrap();
}

fn replay_args() -> [&'static str; 5] {
    ["replay", "--cassette", "t", "--no-overlay", "auth"]
}

/// Starts `n` replays of `t` at once; every one must start and serve.
async fn start_together(dir: &Path, n: usize) {
    let starts: Vec<_> = (0..n)
        .map(|_| {
            let d = dir.to_path_buf();
            std::thread::spawn(move || Callvcr::start(&d, &replay_args()))
        })
        .collect();
    let running: Vec<Callvcr> = starts.into_iter().map(|t| t.join().expect("a replay failed to start")).collect();
    for cv in running {
        let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
        let r = api.send("GET", "/api/v2/users/me", &H, "").await;
        assert_eq!((r.status, r.text()), (200, ME.to_string()));
        let (code, log) = cv.stop();
        assert_eq!(code, 0, "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_replays_started_together_on_a_cassette_without_a_replay_file_all_serve() {
    let dir = tempdir("together8");
    stored(&dir, 200);
    start_together(&dir, 8).await;
    assert!(dir.join("cassettes/t/replay.bin").exists(), "one of them wrote the replay file");
}

/// The start that used to fail about one time in ten: three replays of a fresh recording at once,
/// 200 times over (bounded: the loop stops with a failure past 15 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_started_together_never_refuse_to_start_in_200_rounds() {
    let dir = tempdir("together200");
    stored(&dir, 20);
    let started = callvcr::clock::Clock::instant();
    for round in 0..200 {
        if round > 0 {
            remove_replay_file(&dir);
        }
        start_together(&dir, 3).await;
        assert!(started.elapsed() < Duration::from_secs(900), "round {round} past the time bound");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_while_writing_the_replay_file_leaves_nothing_stale() {
    let dir = tempdir("together-kill");
    // Enough exchanges that writing the replay file takes a while.
    stored(&dir, 60_000);
    let lock_path = dir.join("cassettes/t/replay-file.lock");
    let ready = dir.join("ready-killed.json");
    let mut first = Command::new(env!("CARGO_BIN_EXE_callvcr"))
        .args(replay_args())
        .args(["--listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--ready-file")
        .arg(&ready)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it holds the lock (it is writing the file), then kill it there.
    // Looked at every millisecond: the file is written in a short window.
    let what = "the first replay holding the lock or finishing";
    let held = wait_for_blocking(what, Duration::from_secs(60), Duration::from_millis(1), || {
        if let Ok(f) = std::fs::File::open(&lock_path) {
            match f.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) => return Some(true),
                Ok(()) => drop(f),
                Err(e) => panic!("{e:?}"),
            }
        }
        (first.try_wait().unwrap().is_some() || ready.exists()).then_some(false)
    });
    assert!(held, "the first replay was never seen writing the replay file");
    let _ = Command::new("kill").arg("-9").arg(first.id().to_string()).status();
    let _ = first.wait();
    assert!(!dir.join("cassettes/t/replay.bin").exists(), "killed before it finished the file");
    // The next start takes the lock the kernel released, writes the file again and serves.
    let cv = Callvcr::start(&dir, &replay_args());
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    let r = api.send("GET", "/api/v2/filler/59999", &H, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(cv.stop().0, 0);
    assert!(dir.join("cassettes/t/replay.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_waits_for_the_lock_holder_within_its_bound_and_then_names_it() {
    let dir = tempdir("together-wait");
    stored(&dir, 5);
    // This test process plays a replay that never finishes writing the file.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("cassettes/t/replay-file.lock"))
        .unwrap();
    lock.lock().unwrap();
    std::fs::write(dir.join("cassettes/t/replay-file.lock"), std::process::id().to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callvcr"))
        .args(replay_args())
        .args(["--listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("CALLVCR_LOCK_WAIT_MS", "1500")
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("(pid {})", std::process::id())), "{err}");
    assert!(err.contains("has been writing its replay file for 1 s"), "{err}");
    assert!(!dir.join("cassettes/t/replay.bin").exists());
    // Released: the next start writes the file and serves.
    drop(lock);
    let cv = Callvcr::start(&dir, &replay_args());
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    assert_eq!(api.send("GET", "/api/v2/users/me", &H, "").await.status, 200);
    assert_eq!(cv.stop().0, 0);
    assert!(dir.join("cassettes/t/replay.bin").exists());
}
