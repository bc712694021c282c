//! Certificates and rustls configurations: the local CA (name-constrained to the configured domains),
//! leaves minted per host on demand, and the verified client configuration used upstream.
//! Knows nothing about HTTP.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::clock::{self, Clock};

/// File names inside the certs directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key (mode 0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Errors from certificate work.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The CA already exists and `--force` was not given.
    #[error("a CA already exists at {0}; pass --force to replace it (clients must then trust the new one)")]
    Exists(PathBuf),
    /// No CA yet.
    #[error("no CA at {0}; run `callvcr ca init` first")]
    Missing(PathBuf),
    /// A certificate or key would not parse or sign.
    #[error("certificate error: {0}")]
    Cert(String),
    /// rustls refused a configuration.
    #[error("TLS configuration error: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Maps an IO error to [`TlsError::Io`] naming `path`.
fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_path_buf(), source }
}

/// Any certificate or key failure as [`TlsError::Cert`].
fn cert_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Cert(e.to_string())
}

/// The crypto provider used everywhere (ring; one provider per build).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What `ca show` reports about a CA on disk.
#[derive(Debug, Clone)]
pub struct CaInfo {
    /// Path of the certificate.
    pub cert_path: PathBuf,
    /// Expiry, seconds since the epoch.
    pub not_after: i64,
    /// Domains the name constraints permit.
    pub permitted: Vec<String>,
}

/// A loaded CA that can sign leaves.
pub struct Ca {
    /// The CA's certificate parameters and key, for signing leaves.
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate as on disk, sent after each leaf in the chain.
    cert_der: CertificateDer<'static>,
    /// Facts about the CA.
    pub info: CaInfo,
}

impl std::fmt::Debug for Ca {
    /// The facts only: never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("info", &self.info).finish_non_exhaustive()
    }
}

/// Creates a new CA in `dir` permitting only `domains`. Refuses to overwrite unless `force`.
pub fn init_ca(dir: &Path, domains: &[String], force: bool, clock: &Clock) -> Result<CaInfo, TlsError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    if !force && (cert_path.exists() || key_path.exists()) {
        return Err(TlsError::Exists(cert_path));
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "callvcr local CA");
    dn.push(DnType::OrganizationName, "callvcr");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: domains.iter().map(|d| GeneralSubtree::DnsName(d.clone())).collect(),
        excluded_subtrees: vec![],
    });
    let now = clock.now_ms();
    let (y, m, d) = clock::ymd(now - 86_400_000);
    params.not_before = rcgen::date_time_ymd(y as i32, m as u8, d as u8);
    let (y, m, d) = clock::ymd(now + 10 * 365 * 86_400_000);
    params.not_after = rcgen::date_time_ymd(y as i32, m as u8, d as u8);
    let cert = params.self_signed(&key).map_err(cert_err)?;

    // Each written under a private name, then renamed, the certificate last: a process that finds
    // both files (without taking the lock) never reads half of one.
    let pid = std::process::id();
    let key_tmp = dir.join(format!("{CA_KEY_FILE}.{pid}.tmp"));
    write_private(&key_tmp, key.serialize_pem().as_bytes())?;
    fs::rename(&key_tmp, &key_path).map_err(io_err(&key_path))?;
    let cert_tmp = dir.join(format!("{CA_CERT_FILE}.{pid}.tmp"));
    fs::write(&cert_tmp, cert.pem()).map_err(io_err(&cert_tmp))?;
    fs::rename(&cert_tmp, &cert_path).map_err(io_err(&cert_path))?;
    ca_info(&cert_path)
}

/// Writes `bytes` to `path` readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let _ = fs::remove_file(path);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// File (in the certs directory) of the RSA key that signs platform JWTs (NICE `id_token`).
pub const TOKEN_KEY_FILE: &str = "token-signing-key.pk8";

/// The token-signing key (PKCS#8 DER) from `dir`, made and kept there (mode 0600) on first use.
/// RSA, because the platform's SDK accepts RS256 only; ring cannot make RSA keys, so the `rsa`
/// crate makes it and ring signs with it.
pub fn token_signing_key(dir: &Path) -> Result<Vec<u8>, TlsError> {
    let path = dir.join(TOKEN_KEY_FILE);
    match fs::read(&path) {
        Ok(der) => {
            ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| {
                cert_err(format!("{}: not an RSA PKCS#8 key ({e}); delete it to make a new one", path.display()))
            })?;
            return Ok(der);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path)(e)),
    }
    // Made once however many processes ask at once: the others wait, then read it.
    let _lock = lock_dir(dir)?;
    if let Ok(der) = fs::read(&path) {
        return Ok(der);
    }
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .map_err(|e| cert_err(format!("cannot make the token-signing key: {e}")))?;
    let der = key.to_pkcs8_der().map_err(|e| cert_err(format!("cannot encode the token-signing key: {e}")))?;
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    // Written under a private name, then renamed: a reader never sees half a key.
    let tmp = dir.join(format!("{TOKEN_KEY_FILE}.{}.tmp", std::process::id()));
    write_private(&tmp, der.as_bytes())?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    tracing::info!(path = %path.display(), "made the token-signing key (RSA 2048) for platform JWTs");
    Ok(der.as_bytes().to_vec())
}

/// The lock on `dir` (the CA directory) while something in it is made.
fn lock_dir(dir: &Path) -> Result<crate::lockfile::LockFile, TlsError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(".lock");
    match crate::lockfile::take_within(&path, 60_000) {
        Ok(Ok(l)) => Ok(l),
        Ok(Err(pid)) => Err(cert_err(format!(
            "{}: another callvcr{} has been making keys there for 60 s",
            dir.display(),
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ))),
        Err(e) => Err(cert_err(e.to_string())),
    }
}

/// Reads facts about the CA certificate at `cert_path`.
pub fn ca_info(cert_path: &Path) -> Result<CaInfo, TlsError> {
    let pem = fs::read(cert_path).map_err(io_err(cert_path))?;
    let der = CertificateDer::from_pem_slice(&pem).map_err(|e| cert_err(format!("{}: {e}", cert_path.display())))?;
    let (_, x) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| cert_err(format!("{}: {e}", cert_path.display())))?;
    let mut permitted = Vec::new();
    if let Ok(Some(nc)) = x.name_constraints() {
        for s in nc.value.permitted_subtrees.iter().flatten() {
            if let x509_parser::extensions::GeneralName::DNSName(d) = s.base {
                permitted.push(d.to_string());
            }
        }
    }
    Ok(CaInfo { cert_path: cert_path.to_path_buf(), not_after: x.validity().not_after.timestamp(), permitted })
}

impl Ca {
    /// Loads the CA from `dir`.
    pub fn load(dir: &Path) -> Result<Ca, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if !cert_path.exists() || !key_path.exists() {
            return Err(TlsError::Missing(dir.to_path_buf()));
        }
        let cert_pem = fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        let key_pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| cert_err(format!("{}: {e}", key_path.display())))?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| cert_err(format!("{}: {e}", cert_path.display())))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| cert_err(format!("{}: {e}", cert_path.display())))?;
        let info = ca_info(&cert_path)?;
        Ok(Ca { issuer, cert_der, info })
    }

    /// Loads the CA from `dir`, creating it first when there is none. Returns whether it was created.
    /// Processes started together make it once: the first under the directory's lock, the others
    /// wait for it and load it.
    pub fn load_or_init(dir: &Path, domains: &[String], clock: &Clock) -> Result<(Ca, bool), TlsError> {
        if dir.join(CA_CERT_FILE).exists() && dir.join(CA_KEY_FILE).exists() {
            return Ok((Ca::load(dir)?, false));
        }
        let _lock = lock_dir(dir)?;
        if dir.join(CA_CERT_FILE).exists() && dir.join(CA_KEY_FILE).exists() {
            return Ok((Ca::load(dir)?, false));
        }
        init_ca(dir, domains, false, clock)?;
        Ok((Ca::load(dir)?, true))
    }

    /// Configured domains the CA's name constraints do not permit (clients would reject leaves for them).
    pub fn uncovered(&self, domains: &[String]) -> Vec<String> {
        domains
            .iter()
            .filter(|d| {
                !self.info.permitted.iter().any(|p| {
                    d.as_str() == p || (d.ends_with(p.as_str()) && d.as_bytes()[d.len() - p.len() - 1] == b'.')
                })
            })
            .cloned()
            .collect()
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Mints a leaf for `host` signed by this CA, with `key` as its key. Returns the chain (leaf, CA).
    pub fn mint_leaf(
        &self,
        host: &str,
        key: &KeyPair,
        clock: &Clock,
    ) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SanType::IpAddress(ip)],
            Err(_) => vec![SanType::DnsName(host.try_into().map_err(cert_err)?)],
        };
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = clock.now_ms();
        let (y, m, d) = clock::ymd(now - 86_400_000);
        params.not_before = rcgen::date_time_ymd(y as i32, m as u8, d as u8);
        // Under 398 days, the longest validity clients accept for a server certificate.
        let (y, m, d) = clock::ymd(now + 365 * 86_400_000);
        params.not_after = rcgen::date_time_ymd(y as i32, m as u8, d as u8);
        let cert = params.signed_by(key, &self.issuer).map_err(cert_err)?;
        Ok(vec![cert.der().clone(), self.cert_der.clone()])
    }
}

/// One host's minted configuration, or why minting failed; filled once.
type MintCell = OnceLock<Result<Arc<ServerConfig>, String>>;

/// Mints and caches one rustls server configuration per host, one mint at a time per host.
pub struct LeafCache {
    /// Signs the leaves.
    ca: Ca,
    /// One P-256 key for every leaf, made at start and never written: a mint is one signature, not a key
    /// generation.
    leaf_key: KeyPair,
    /// The clock a leaf's validity is dated from (a day before its now to a year after) when minted.
    clock: Arc<Clock>,
    /// Minted configurations by host. The lock is held only to find the cell; minting happens in the
    /// cell, so other hosts never wait on it.
    by_host: Mutex<HashMap<String, Arc<MintCell>>>,
}

impl std::fmt::Debug for LeafCache {
    /// The CA's facts only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCache").field("ca", &self.ca).finish_non_exhaustive()
    }
}

impl LeafCache {
    /// A cache over `ca`; all leaves share one freshly generated key.
    pub fn new(ca: Ca, clock: Arc<Clock>) -> Result<LeafCache, TlsError> {
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        Ok(LeafCache { ca, leaf_key, clock, by_host: Mutex::new(HashMap::new()) })
    }

    /// The CA behind the cache.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The server configuration for `host` (lower-case), minting its leaf on first use.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, TlsError> {
        let cell = {
            let mut map = self.by_host.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(host.to_string()).or_default().clone()
        };
        // `get_or_init` blocks other callers for the same host while one mints.
        cell.get_or_init(|| self.build(host).map_err(|e| e.to_string())).clone().map_err(TlsError::Cert)
    }

    /// How many hosts have a minted leaf.
    pub fn minted(&self) -> usize {
        self.by_host.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|c| c.get().is_some()).count()
    }

    /// Mints `host`'s leaf and the server configuration presenting it, offering HTTP/2 and HTTP/1.1.
    fn build(&self, host: &str) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = self.ca.mint_leaf(host, &self.leaf_key, &self.clock)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// The verified client configuration for upstream connections: compiled-in web roots plus
/// `extra_ca` (never the system store, so a loop back to callvcr's own CA fails fast).
pub fn upstream_client_config(extra_ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let pem = fs::read(path).map_err(io_err(path))?;
        let mut n = 0;
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| cert_err(format!("{}: {e}", path.display())))?;
            roots.add(c).map_err(|e| cert_err(format!("{}: {e}", path.display())))?;
            n += 1;
        }
        if n == 0 {
            return Err(cert_err(format!("{}: no PEM certificate found", path.display())));
        }
    }
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("callvcr-tls-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn ca_is_constrained_private_and_not_overwritten() {
        let dir = tmpdir("init");
        let clock = Clock::system();
        let info = init_ca(&dir, &["mypurecloud.com".into(), "nice-incontact.com".into()], false, &clock).unwrap();
        assert_eq!(info.permitted, vec!["mypurecloud.com", "nice-incontact.com"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(CA_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(init_ca(&dir, &["x.com".into()], false, &clock), Err(TlsError::Exists(_))));
        let ca = Ca::load(&dir).unwrap();
        assert_eq!(ca.uncovered(&["api.mypurecloud.com".into(), "example.com".into()]), vec!["example.com"]);
        let cache = LeafCache::new(ca, Arc::new(clock)).unwrap();
        cache.server_config("api.mypurecloud.com").unwrap();
        cache.server_config("api.mypurecloud.com").unwrap();
        assert_eq!(cache.minted(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
