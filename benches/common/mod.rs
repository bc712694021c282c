//! What the benchmarks share.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// A rustls client trusting only the CA at `ca`, speaking HTTP/1.1.
pub(crate) fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&std::fs::read(ca).unwrap()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Starts this bench binary again as its bare server (`--bare-server ARGS...`) and reads the
/// address it prints first.
#[allow(dead_code)] // not every bench has a bare server
pub(crate) fn spawn_bare(args: &[&str]) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::BufRead;
    let mut bare = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--bare-server")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(bare.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (bare, line.trim().parse().unwrap())
}
