//! The client to the real platform: verified TLS, a resolver that ignores the hosts file, `resolve`
//! overrides, timeouts, and failures classified by kind (DNS, connect, TLS, timeout).
//! Knows nothing about overlays or cassettes.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Which step of reaching the upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The name did not resolve.
    Dns,
    /// TCP connect failed or was refused.
    Connect,
    /// The TLS handshake or certificate verification failed.
    Tls,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream broke the protocol or the connection mid-exchange.
    Protocol,
}

impl FailureKind {
    /// Short name used in response bodies and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Dns => "dns",
            FailureKind::Connect => "connect",
            FailureKind::Tls => "tls",
            FailureKind::Timeout => "timeout",
            FailureKind::Protocol => "protocol",
        }
    }
}

/// A failure reaching or talking to the upstream.
#[derive(Debug, Clone, thiserror::Error)]
#[error("upstream {kind} failure for {host}: {detail}", kind = .kind.as_str())]
pub struct UpstreamError {
    /// Which step failed.
    pub kind: FailureKind,
    /// The host being reached.
    pub host: String,
    /// What went wrong.
    pub detail: String,
}

/// Upstream settings.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// Verified client TLS configuration.
    pub tls: Arc<rustls::ClientConfig>,
    /// Host (or `*`) → address overrides.
    pub resolve: BTreeMap<String, SocketAddr>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Timeout for a whole exchange (until the response head).
    pub timeout: Duration,
    /// DNS servers to ask instead of the system's.
    pub nameservers: Vec<SocketAddr>,
}

/// A connection to the upstream: plain TCP or TLS.
#[derive(Debug)]
pub enum UpstreamConn {
    /// `http` upstream.
    Plain(TokioIo<TcpStream>),
    /// `https` upstream.
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Read for UpstreamConn {
    /// Reads from whichever stream it is.
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for UpstreamConn {
    /// Writes to whichever stream it is.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    /// Flushes whichever stream it is.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    /// Shuts whichever stream it is down (for TLS, with a close_notify first).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamConn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connection for UpstreamConn {
    /// Tells the pool the connection speaks HTTP/2 when TLS negotiated `h2`, so hyper multiplexes it.
    fn connected(&self) -> Connected {
        match self {
            UpstreamConn::Plain(_) => Connected::new(),
            UpstreamConn::Tls(s) => {
                if s.inner().get_ref().1.alpn_protocol() == Some(b"h2") {
                    Connected::new().negotiated_h2()
                } else {
                    Connected::new()
                }
            }
        }
    }
}

/// Opens upstream connections (the connector behind the pooled client).
#[derive(Clone)]
pub struct Connector {
    /// Overrides, nameservers, timeouts and the TLS client configuration.
    opts: Arc<UpstreamOptions>,
    /// The DNS resolver, built on the first lookup that needs DNS and shared with the HTTP/1.1
    /// connector; or why none could be built.
    resolver: Arc<OnceCell<Result<hickory_resolver::TokioResolver, String>>>,
}

impl std::fmt::Debug for Connector {
    /// The overrides only (the TLS configuration has nothing to show).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("resolve", &self.opts.resolve).finish_non_exhaustive()
    }
}

impl Connector {
    /// Resolves `host`: an override, a literal address, or DNS that never reads the hosts file
    /// (the hosts file points the platform's names at callvcr itself).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, UpstreamError> {
        let fail = |kind, detail: String| UpstreamError { kind, host: host.to_string(), detail };
        if let Some(a) = self.opts.resolve.get(host).or_else(|| self.opts.resolve.get("*")) {
            return Ok(*a);
        }
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let resolver = self
            .resolver
            .get_or_init(|| async {
                use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
                let mut b = if self.opts.nameservers.is_empty() {
                    hickory_resolver::Resolver::builder_tokio().map_err(|e| e.to_string())?
                } else {
                    let servers: Vec<NameServerConfig> = self
                        .opts
                        .nameservers
                        .iter()
                        .map(|a| NameServerConfig::new(*a, hickory_resolver::proto::xfer::Protocol::Udp))
                        .collect();
                    hickory_resolver::Resolver::builder_with_config(
                        ResolverConfig::from_parts(None, vec![], servers),
                        hickory_resolver::name_server::TokioConnectionProvider::default(),
                    )
                };
                b.options_mut().use_hosts_file = ResolveHosts::Never;
                b.options_mut().timeout = self.opts.connect_timeout.min(Duration::from_secs(5));
                b.options_mut().attempts = 2;
                Ok(b.build())
            })
            .await
            .as_ref()
            .map_err(|e| fail(FailureKind::Dns, format!("no DNS configuration: {e}")))?;
        let ips = resolver.lookup_ip(host).await.map_err(|e| fail(FailureKind::Dns, e.to_string()))?;
        ips.iter().next().map(|ip| SocketAddr::new(ip, port)).ok_or_else(|| fail(FailureKind::Dns, "no address".into()))
    }

    /// Resolves, connects (within the connect timeout) and, for `https`, completes a verified TLS
    /// handshake with SNI set to the URI's host; each failure classified by its [`FailureKind`].
    async fn connect(self, uri: Uri) -> Result<UpstreamConn, UpstreamError> {
        let host = uri.host().unwrap_or("").to_string();
        let https = uri.scheme_str() != Some("http");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let fail = |kind, detail: String| UpstreamError { kind, host: host.clone(), detail };
        let addr = self.resolve(&host, port).await?;
        let tcp = match tokio::time::timeout(self.opts.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(fail(FailureKind::Connect, format!("{addr}: {e}"))),
            Err(_) => return Err(fail(FailureKind::Timeout, format!("connect to {addr} timed out"))),
        };
        let _ = tcp.set_nodelay(true);
        if !https {
            return Ok(UpstreamConn::Plain(TokioIo::new(tcp)));
        }
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
            .map_err(|e| fail(FailureKind::Tls, e.to_string()))?;
        let tls = TlsConnector::from(self.opts.tls.clone());
        match tokio::time::timeout(self.opts.connect_timeout, tls.connect(name, tcp)).await {
            Ok(Ok(s)) => Ok(UpstreamConn::Tls(Box::new(TokioIo::new(s)))),
            Ok(Err(e)) => Err(fail(FailureKind::Tls, e.to_string())),
            Err(_) => Err(fail(FailureKind::Timeout, "TLS handshake timed out".into())),
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    /// The connection made.
    type Response = UpstreamConn;
    /// A classified failure, so the proxy can say DNS, connect, TLS or timeout.
    type Error = UpstreamError;
    /// Boxed: the connect future borrows nothing from the connector (it works on a clone).
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamConn, UpstreamError>> + Send>>;

    /// Always ready: there is nothing to wait for before connecting.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// Connects to `uri`'s host and port.
    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// The pooled upstream client.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The pooled hyper client for ordinary requests (HTTP/2 where the platform offers it).
    client: Client<Connector, Full<Bytes>>,
    /// The pooled client that speaks HTTP/1.1 only, for requests an SDK sent over HTTP/1.1: the
    /// platform sees the protocol the SDK chose.
    h1_client: Client<Connector, Full<Bytes>>,
    /// The connector behind `client`, also for tunnels opened by hand.
    connector: Connector,
    /// HTTP/1.1-only connector for upgrades (a WebSocket handshake cannot ride HTTP/2 here).
    h1_connector: Connector,
    /// How long to wait for the upstream's answer (`upstream.timeout_ms`).
    timeout: Duration,
}

impl Upstream {
    /// A client with the given options.
    pub fn new(opts: UpstreamOptions) -> Upstream {
        let timeout = opts.timeout;
        let resolver = Arc::new(OnceCell::new());
        let mut h1_opts = opts.clone();
        let mut h1_tls = (*opts.tls).clone();
        h1_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        h1_opts.tls = Arc::new(h1_tls);
        let connector = Connector { opts: Arc::new(opts), resolver: resolver.clone() };
        let h1_connector = Connector { opts: Arc::new(h1_opts), resolver };
        let client =
            Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector.clone());
        let h1_client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(h1_connector.clone());
        Upstream { client, h1_client, connector, h1_connector, timeout }
    }

    /// The connector (for resolving and tunnels).
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Sends `req` (absolute URI) and returns the response head; the body streams from the upstream.
    /// HTTP/2 is used where the platform offers it.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, UpstreamError> {
        self.send_as(req, false).await
    }

    /// [`Upstream::send`], over HTTP/1.1 only when `h1` is set (the SDK spoke HTTP/1.1).
    pub async fn send_as(&self, req: Request<Full<Bytes>>, h1: bool) -> Result<Response<Incoming>, UpstreamError> {
        let host = req.uri().host().unwrap_or("").to_string();
        let client = if h1 { &self.h1_client } else { &self.client };
        match tokio::time::timeout(self.timeout, client.request(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(classify(&host, &e)),
            Err(_) => Err(UpstreamError {
                kind: FailureKind::Timeout,
                host,
                detail: format!("no response within {} ms", self.timeout.as_millis()),
            }),
        }
    }
}

impl Upstream {
    /// Sends an upgrade request (WebSocket handshake) on a fresh HTTP/1.1 connection.
    pub async fn upgrade(
        &self,
        mut req: Request<http_body_util::Empty<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let full = req.uri().clone();
        let host = full.host().unwrap_or("").to_string();
        // A direct HTTP/1.1 connection takes the origin form and a Host header.
        if !req.headers().contains_key(http::header::HOST) {
            if let Some(a) = full.authority().and_then(|a| http::HeaderValue::from_str(a.as_str()).ok()) {
                req.headers_mut().insert(http::header::HOST, a);
            }
        }
        *req.uri_mut() = full.path_and_query().map(|p| p.as_str()).unwrap_or("/").parse().unwrap_or_default();
        let fail = |kind, detail: String| UpstreamError { kind, host: host.clone(), detail };
        let work = async {
            let conn = self.h1_connector.clone().connect(full.clone()).await?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(conn)
                .await
                .map_err(|e| fail(FailureKind::Protocol, e.to_string()))?;
            tokio::spawn(async move {
                if let Err(e) = connection.with_upgrades().await {
                    tracing::debug!("upstream upgrade connection ended: {e}");
                }
            });
            sender.send_request(req).await.map_err(|e| fail(FailureKind::Protocol, e.to_string()))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(fail(FailureKind::Timeout, format!("no response within {} ms", self.timeout.as_millis()))),
        }
    }
}

/// Finds our own connect error in the client's error chain, or calls it a protocol failure.
fn classify(host: &str, e: &hyper_util::client::legacy::Error) -> UpstreamError {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(u) = s.downcast_ref::<UpstreamError>() {
            return u.clone();
        }
        src = s.source();
    }
    let mut detail = e.to_string();
    let mut s = std::error::Error::source(e);
    while let Some(x) = s {
        detail.push_str(": ");
        detail.push_str(&x.to_string());
        s = x.source();
    }
    UpstreamError { kind: FailureKind::Protocol, host: host.to_string(), detail }
}
