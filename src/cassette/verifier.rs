//! Verifiers of secrets (an OAuth client secret, a NICE access key secret, a password): what a
//! cassette keeps so that replay can tell the secret a token request was recorded with from another
//! one, without holding the secret. PBKDF2-HMAC-SHA256 with a random salt and many iterations, so a
//! leaked cassette does not give a secret back to a dictionary attack any faster than PBKDF2
//! allows. Pure functions plus a process-wide memo (memory only, never written), so a replay
//! derives once per distinct secret and salt, not once per recorded exchange.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;

/// Iterations of PBKDF2-HMAC-SHA256 (the figure OWASP's password storage guidance gives for it).
pub const ITERATIONS: u32 = 600_000;
/// The verifier's first field; a verifier naming another scheme cannot be checked.
const SCHEME: &str = "pbkdf2-sha256";
/// Bytes of derived hash (SHA-256's output size).
const OUT: usize = 32;

/// A fresh random salt (one per recording run: every verifier it writes shares it).
pub fn salt() -> [u8; 16] {
    use ring::rand::SecureRandom as _;
    let mut s = [0u8; 16];
    // The system's generator does not fail on the platforms callvcr runs on; a zero salt would
    // still give a slow verifier.
    let _ = ring::rand::SystemRandom::new().fill(&mut s);
    s
}

/// This process's salt: every verifier one recording run writes shares it, so a secret sent many
/// times is derived once.
pub fn run_salt() -> &'static [u8; 16] {
    /// Drawn on first use, then fixed for the life of the process.
    static SALT: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    SALT.get_or_init(salt)
}

/// The verifier of `secret` under `salt`: `pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64).
pub fn make(secret: &str, salt: &[u8]) -> String {
    let hash = derive(secret, salt, ITERATIONS);
    format!("{SCHEME}${ITERATIONS}${}${}", STANDARD_NO_PAD.encode(salt), STANDARD_NO_PAD.encode(hash))
}

/// Whether `secret` is the one `verifier` was made from; `None` when the verifier cannot be read.
pub fn check(verifier: &str, secret: &str) -> Option<bool> {
    let mut parts = verifier.split('$');
    if parts.next()? != SCHEME {
        return None;
    }
    let iterations: u32 = parts.next()?.parse().ok()?;
    let salt = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
    let want = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
    if parts.next().is_some() || want.len() != OUT || !(1..=10_000_000).contains(&iterations) {
        return None;
    }
    let got = derive(secret, &salt, iterations);
    // Compared without an early exit, so the time taken says nothing about where they differ.
    Some(got.iter().zip(&want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
}

/// Derived hashes by (salt, iterations, SHA-256 of the secret): never the secret itself.
type Memo = HashMap<(Vec<u8>, u32, [u8; 32]), [u8; OUT]>;
/// The process-wide memo; cleared past 10,000 entries so a long run with many secrets stays small.
static MEMO: Mutex<Option<Memo>> = Mutex::new(None);

/// PBKDF2-HMAC-SHA256 of `secret`, from the memo when this secret, salt and count were derived before.
/// 600,000 iterations take a noticeable fraction of a second, so replaying many token requests would
/// otherwise stall on them.
fn derive(secret: &str, salt: &[u8], iterations: u32) -> [u8; OUT] {
    // The memo is keyed by a digest of the secret, in memory only.
    let mut digest = [0u8; 32];
    digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref());
    let key = (salt.to_vec(), iterations, digest);
    if let Some(h) = MEMO.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|m| m.get(&key)) {
        return *h;
    }
    let mut out = [0u8; OUT];
    let n = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, n, salt, secret.as_bytes(), &mut out);
    let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
    let m = memo.get_or_insert_with(HashMap::new);
    if m.len() > 10_000 {
        m.clear();
    }
    m.insert(key, out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_accepts_its_secret_only_and_holds_no_trace_of_it() {
        let salt = [7u8; 16];
        let v = make("SECRET-CLIENT-SECRET-000", &salt);
        assert!(v.starts_with("pbkdf2-sha256$600000$"), "{v}");
        assert!(!v.contains("SECRET"), "{v}");
        assert_eq!(check(&v, "SECRET-CLIENT-SECRET-000"), Some(true));
        assert_eq!(check(&v, "SECRET-CLIENT-SECRET-001"), Some(false));
        assert_eq!(check(&v, ""), Some(false));
        // Another salt, another verifier for the same secret.
        assert_ne!(make("SECRET-CLIENT-SECRET-000", &[8u8; 16]), v);
        assert_eq!(check("plain$1$AA$AA", "x"), None);
        assert_eq!(check("pbkdf2-sha256$0$AAAA$AAAA", "x"), None);
        assert_eq!(check("pbkdf2-sha256$10$!!$AAAA", "x"), None);
    }
}
