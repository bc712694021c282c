//! Listeners: the transparent TLS listener (host from SNI), the HTTP listener that also serves
//! CONNECT and absolute-form requests, and the accept loops with graceful shutdown.
//! Also the per-connection machinery under them: the drain that closes connections on shutdown,
//! the reaper that closes slow clients (`limits.read_timeout_ms`), and the IO wrapper that carries
//! out injected connection faults.
//! Knows nothing about cassettes: requests go to `Proxy::handle` with their target.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;

use crate::proxy::{CutPlan, CutSwitch, Failure, Proxy, Target};
use crate::tls::LeafCache;
use crate::upstream::{FailureKind, UpstreamError};

/// A listener that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {reason}")]
pub(crate) struct ListenError {
    /// The address.
    pub addr: String,
    /// Which listener.
    pub what: &'static str,
    /// Why, with the fix.
    pub reason: String,
}

/// Binds `addr` for the listener named `what`, with a message that says what to do when it fails.
pub(crate) async fn bind(addr: &str, what: &'static str, flag: &str) -> Result<TcpListener, ListenError> {
    let err = |reason: String| ListenError { addr: addr.to_string(), what, reason };
    let sa: SocketAddr = addr.parse().map_err(|_| err(format!("not an address; expected host:port with {flag}")))?;
    TcpListener::bind(sa).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => err(format!("the port is in use by another program; pick another with {flag} (port 0 picks a free one)")),
        std::io::ErrorKind::PermissionDenied => err(format!(
            "permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE (e.g. `sudo setcap cap_net_bind_service=+ep $(which callvcr)`), or pick another with {flag}"
        )),
        _ => err(e.to_string()),
    })
}

/// Tells every open connection to finish and close, then waits for them.
#[derive(Debug)]
pub(crate) struct DrainSignal {
    /// State shared with every [`Drain`] handle.
    inner: Arc<DrainInner>,
}

/// Held by every open connection (and each task that may open one); when signalled the connection
/// finishes its in-flight requests and closes. Checking for the signal costs a connection an
/// atomic load per poll and touches nothing other connections share (a shared channel polled by
/// every connection took a lock on each poll).
#[derive(Debug)]
pub(crate) struct Drain {
    /// State shared with the signal and the other handles.
    inner: Arc<DrainInner>,
}

/// What a [`DrainSignal`] and its [`Drain`] handles share.
#[derive(Debug, Default)]
struct DrainInner {
    /// Set once the drain starts; a connection polled after that shuts down gracefully.
    draining: std::sync::atomic::AtomicBool,
    /// Live handles: the signal waits until none is left.
    handles: std::sync::atomic::AtomicUsize,
    /// Each watched connection, to wake it when draining starts or it is too slow.
    conns: std::sync::Mutex<std::collections::HashMap<u64, Arc<ConnWatch>>>,
    /// The key the next watched connection gets in `conns`.
    next: std::sync::atomic::AtomicU64,
    /// Notified when the last handle is dropped.
    all_gone: tokio::sync::Notify,
}

/// Monotonic milliseconds, as of the reaper's last tick: what connections read per request
/// instead of the clock.
static COARSE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Milliseconds since the first call, plus one: never 0, because a `waiting_since` of 0 means
/// "answering a request, not waiting".
fn monotonic_ms() -> u64 {
    /// The instant of the first call, the origin of the count.
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(crate::clock::Clock::instant);
    crate::clock::Clock::instant().duration_since(start).as_millis() as u64 + 1
}

/// One connection as the drain and the slow-client reaper see it: its waker, and since when it
/// has been waiting for a request head. A client that takes longer than `limits.read_timeout_ms`
/// to send a complete head, or leaves a connection idle that long between requests, has its
/// connection closed; that costs a request two stores to this connection's own state, not a timer.
#[derive(Debug, Default)]
pub(crate) struct ConnWatch {
    /// The connection's task, woken to see a drain or an expiry.
    waker: futures_util::task::AtomicWaker,
    /// When it began waiting for a request head (coarse ms); 0 while a request is answered.
    waiting_since: std::sync::atomic::AtomicU64,
    /// Requests being answered: the reaper leaves a connection alone while any is.
    in_flight: std::sync::atomic::AtomicUsize,
    /// Whether the reaper may close it (HTTP/1 listeners; not HTTP/2 or the admin API).
    reapable: std::sync::atomic::AtomicBool,
    /// Set by the reaper (once): the connection's next poll ends it.
    expired: std::sync::atomic::AtomicBool,
}

impl ConnWatch {
    /// A watch for a new connection; `reapable` when slow clients are cut off on it.
    pub(crate) fn new(reapable: bool) -> Arc<ConnWatch> {
        let w = ConnWatch::default();
        w.reapable.store(reapable, Ordering::Relaxed);
        w.waiting_since.store(COARSE_MS.load(Ordering::Relaxed), Ordering::Relaxed);
        Arc::new(w)
    }

    /// A request head arrived (`h2`: over HTTP/2, where heads are not timed). Until the guard is
    /// dropped the connection is busy, not waiting.
    pub(crate) fn request(self: &Arc<Self>, h2: bool) -> RequestGuard {
        if h2 && self.reapable.load(Ordering::Relaxed) {
            self.reapable.store(false, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.waiting_since.store(0, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Bytes went out: an answer is still being written, so the wait for the next head starts later.
    fn wrote(&self) {
        if self.waiting_since.load(Ordering::Relaxed) != 0 {
            self.waiting_since.store(COARSE_MS.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// Marks one request in progress on a [`ConnWatch`].
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<ConnWatch>);

impl Drop for RequestGuard {
    /// Ends the request; when it was the last in flight, the wait for the next head starts now.
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.waiting_since.store(COARSE_MS.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

impl DrainSignal {
    /// A signal and the first handle to give out. With `read_timeout`, a reaper closes connections
    /// that wait longer than it for a complete request head (checked several times per timeout).
    pub(crate) fn new(read_timeout: Option<Duration>) -> (DrainSignal, Drain) {
        let inner = Arc::new(DrainInner::default());
        inner.handles.store(1, Ordering::SeqCst);
        COARSE_MS.store(monotonic_ms(), Ordering::Relaxed);
        if let Some(limit) = read_timeout {
            let weak = Arc::downgrade(&inner);
            let limit_ms = limit.as_millis() as u64;
            let every = Duration::from_millis((limit_ms / 8).clamp(5, 500));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    let now = monotonic_ms();
                    COARSE_MS.store(now, Ordering::Relaxed);
                    let conns = inner.conns.lock().unwrap_or_else(|e| e.into_inner());
                    for w in conns.values() {
                        let since = w.waiting_since.load(Ordering::Relaxed);
                        if w.reapable.load(Ordering::Relaxed)
                            && since != 0
                            && w.in_flight.load(Ordering::Relaxed) == 0
                            && now.saturating_sub(since) > limit_ms
                            && !w.expired.swap(true, Ordering::Relaxed)
                        {
                            w.waker.wake();
                        }
                    }
                }
            });
        }
        (DrainSignal { inner: inner.clone() }, Drain { inner })
    }

    /// Signals every connection, then waits up to `limit` for all to close. Returns whether they all did.
    pub(crate) async fn drain(self, limit: Duration) -> bool {
        let inner = &self.inner;
        inner.draining.store(true, Ordering::SeqCst);
        let conns: Vec<_> = inner.conns.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for w in conns {
            w.waker.wake();
        }
        let all_gone = async {
            loop {
                let gone = inner.all_gone.notified();
                tokio::pin!(gone);
                gone.as_mut().enable();
                if inner.handles.load(Ordering::SeqCst) == 0 {
                    return;
                }
                gone.await;
            }
        };
        tokio::time::timeout(limit, all_gone).await.is_ok()
    }
}

impl Clone for Drain {
    /// Another handle, counted: the drain waits for it to be dropped too.
    fn clone(&self) -> Drain {
        self.inner.handles.fetch_add(1, Ordering::SeqCst);
        Drain { inner: self.inner.clone() }
    }
}

impl Drop for Drain {
    /// Uncounts the handle; the last one to go wakes [`DrainSignal::drain`].
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.all_gone.notify_waiters();
        }
    }
}

impl Drain {
    /// Runs `conn` to completion, shutting it down gracefully once drain is signalled, or closing
    /// it when the reaper finds it waited too long for a request head.
    pub(crate) async fn watch<C: GracefulConnection>(self, conn: C, watch: Arc<ConnWatch>) -> Result<(), C::Error> {
        let inner = self.inner.clone();
        let id = inner.next.fetch_add(1, Ordering::Relaxed);
        inner.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(id, watch.clone());
        let mut conn = std::pin::pin!(conn);
        let mut asked = false;
        let r = std::future::poll_fn(|cx| {
            if !asked {
                // Registered before the flags are read: a drain or reap in between wakes this poll.
                watch.waker.register(cx.waker());
                if watch.expired.load(Ordering::Relaxed) {
                    tracing::debug!(
                        "closed a connection that sent no complete request head within limits.read_timeout_ms"
                    );
                    return std::task::Poll::Ready(Ok(()));
                }
                if inner.draining.load(Ordering::SeqCst) {
                    conn.as_mut().graceful_shutdown();
                    asked = true;
                }
            }
            conn.as_mut().poll(cx)
        })
        .await;
        inner.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        drop(self);
        r
    }
}

/// What every connection handler needs.
#[derive(Clone)]
pub(crate) struct Shared {
    /// Request handling.
    pub proxy: Arc<Proxy>,
    /// Leaves per host.
    pub leaves: Arc<LeafCache>,
    /// Graceful shutdown of connections.
    pub drain: Drain,
}

/// Accepts connections on `listener` until `stop` turns true, handing each to `on_conn`.
/// Accept errors (e.g. out of file descriptors) are logged and retried after a pause.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    mut stop: watch::Receiver<bool>,
    on_conn: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(on_conn(stream, peer));
                }
                Err(e) => {
                    tracing::warn!("{what} accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Accepts TLS connections until `stop` turns true; the target host comes from SNI.
pub(crate) async fn serve_tls(listener: TcpListener, shared: Shared, stop: watch::Receiver<bool>) {
    accept_loop(listener, "TLS listener", stop, move |stream, peer| {
        accept_tls(stream, peer.to_string(), None, 443, shared.clone())
    })
    .await
}

/// Terminates TLS on `io` with a leaf for the SNI host (or `fallback`, the CONNECT host), then serves HTTP.
pub(crate) async fn accept_tls<IO>(io: IO, peer: String, fallback: Option<String>, port: u16, shared: Shared)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match tokio::time::timeout(Duration::from_secs(10), acceptor).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, "TLS handshake failed before ClientHello: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "TLS handshake timed out waiting for ClientHello");
            return;
        }
    };
    let sni = start.client_hello().server_name().map(|s| s.to_ascii_lowercase());
    let Some(host) = sni.clone().or(fallback) else {
        tracing::warn!(%peer, "refused TLS handshake: the client sent no SNI, so the target host is unknown");
        return;
    };
    if !shared.proxy.config.is_configured_host(&host) {
        tracing::warn!(%peer, %host, "refused TLS handshake for {host}: not a configured host (add it to `hosts` in proxy.yaml)");
        return;
    }
    if shared.proxy.refuse_tls(&host) {
        return;
    }
    let cfg = match shared.leaves.server_config(&host) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%host, "could not mint a certificate: {e}");
            return;
        }
    };
    let tls = match tokio::time::timeout(Duration::from_secs(10), start.into_stream(cfg)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, %host, "TLS handshake failed: {e} (does the client trust callvcr's CA? see `callvcr ca show`)");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, %host, "TLS handshake timed out");
            return;
        }
    };
    let target = Arc::new(Target::new("https", host, port));
    serve_http(tls, target, shared).await;
}

/// The HTTP/1 and HTTP/2 connection builder, its head size capped by `limits.max_header_bytes`
/// (a bigger head is answered 431). Never below 8192: hyper panics on an HTTP/1 buffer smaller
/// than its minimum.
fn builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    let max = shared.proxy.config.limits.max_header_bytes.max(8192);
    // A client that trickles its request head (slowloris) is closed by the drain's reaper after
    // the read timeout (see `ConnWatch`), so it holds a connection slot no longer than that.
    b.http1().max_buf_size(max);
    b.http2().max_header_list_size(max as u32);
    b
}

/// Serves intercepted HTTP (1.1 or 2) for one target on an established stream.
async fn serve_http<IO>(io: IO, target: Arc<Target>, shared: Shared)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // This connection's own handle on the proxy: a request clones it, not the proxy's shared
    // count, which every connection on every core would otherwise write to per request.
    let proxy = Arc::new(shared.proxy.clone());
    let switch = Arc::new(CutSwitch::default());
    let watch = ConnWatch::new(true);
    let io = TokioIo::new(FaultIo::new(io, switch.clone(), Some(watch.clone())));
    let w = watch.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let p = proxy.clone();
        let t = target.clone();
        let sw = switch.clone();
        let busy = w.request(req.version() == http::Version::HTTP_2);
        async move {
            let r = p.handle(req, t, Some(sw)).await;
            drop(busy);
            Ok::<_, Infallible>(r)
        }
    });
    let b = builder(&shared);
    let conn = b.serve_connection_with_upgrades(io, svc);
    if let Err(e) = shared.drain.clone().watch(conn.into_owned(), watch).await {
        tracing::debug!("connection ended: {e}");
    }
}

/// Accepts plain HTTP connections (CONNECT, absolute-form, origin-form) until `stop` turns true.
pub(crate) async fn serve_proxy(listener: TcpListener, shared: Shared, stop: watch::Receiver<bool>) {
    accept_loop(listener, "proxy listener", stop, move |stream, peer| proxy_conn(stream, peer, shared.clone())).await
}

/// Serves one connection on the proxy listener, each request through [`proxy_request`]. HTTP/1
/// only: what clients speak to a forward proxy, and CONNECT is taken as an HTTP/1 upgrade.
async fn proxy_conn(stream: TcpStream, peer: SocketAddr, shared: Shared) {
    let s2 = shared.clone();
    let switch = Arc::new(CutSwitch::default());
    let watch = ConnWatch::new(true);
    let io = TokioIo::new(FaultIo::new(stream, switch.clone(), Some(watch.clone())));
    let w = watch.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let s = s2.clone();
        let sw = switch.clone();
        let busy = w.request(false);
        async move {
            let r = proxy_request(req, peer, s, sw).await;
            drop(busy);
            Ok::<_, Infallible>(r)
        }
    });
    let b = builder(&shared).http1_only();
    let conn = b.serve_connection_with_upgrades(io, svc);
    if let Err(e) = shared.drain.clone().watch(conn, watch).await {
        tracing::debug!(%peer, "proxy connection ended: {e}");
    }
}

/// `host[:port]` as a lower-case host (IPv6 brackets removed) and a port, `default_port` when none
/// is written; `None` when there is no host.
fn split_authority(auth: &str, default_port: u16) -> Option<(String, u16)> {
    let a: http::uri::Authority = auth.parse().ok()?;
    let host = a.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some((host, a.port_u16().unwrap_or(default_port)))
}

/// A request the listener cannot route (no host to send it to): answered, journaled and logged
/// through the one [`Failure`] path.
fn unroutable(proxy: &Proxy, req: &Request<Incoming>, host: &str, message: String) -> Response<Full<Bytes>> {
    let f = Failure::request(StatusCode::BAD_REQUEST, "callvcr.request.target", message, "bad-request");
    proxy.refuse(f, req.method().as_str(), host, req.uri().path())
}

/// Routes a request that came to the proxy listener: CONNECT opens a tunnel ([`connect`]); an
/// absolute-form URI names its own target; an origin-form request goes to the configured host its
/// `Host` header names, over HTTPS (port 80 read as 443, so it matches what was recorded over TLS).
async fn proxy_request(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: Shared,
    switch: Arc<CutSwitch>,
) -> Response<Full<Bytes>> {
    if req.method() == http::Method::CONNECT {
        return connect(req, peer, shared).await;
    }
    let uri = req.uri().clone();
    if let (Some(scheme), Some(auth)) = (uri.scheme_str(), uri.authority()) {
        // Absolute-form, as HTTP clients send through HTTPS_PROXY without CONNECT (axios does).
        let https = scheme.eq_ignore_ascii_case("https");
        let Some((host, port)) = split_authority(auth.as_str(), if https { 443 } else { 80 }) else {
            return unroutable(&shared.proxy, &req, "", format!("no host in `{uri}`"));
        };
        let target = Arc::new(Target::new(if https { "https" } else { "http" }, host, port));
        return shared.proxy.handle(req, target, Some(switch)).await;
    }
    // Origin-form: the Host header names the target.
    let host_header = req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).map(String::from);
    let Some((host, port)) = host_header.as_deref().and_then(|h| split_authority(h, 443)) else {
        return unroutable(&shared.proxy, &req, "", "origin-form request without a Host header: send an absolute URI, CONNECT, or a Host header naming the platform host".into());
    };
    if !shared.proxy.config.is_configured_host(&host) {
        let message = format!("Host `{host}` is not a configured host; callvcr cannot tell where to send this request (is a hosts file pointing callvcr at itself?)");
        let f = Failure::request(StatusCode::BAD_REQUEST, "callvcr.host.not_configured", message, "not-intercepted");
        return shared.proxy.refuse(f, req.method().as_str(), &host, req.uri().path());
    }
    let port = if port == 80 { 443 } else { port };
    shared.proxy.handle(req, Arc::new(Target::new("https", host, port)), Some(switch)).await
}

/// Answers CONNECT. A configured host gets a 200, then TLS is terminated on the tunnel (the
/// CONNECT host standing in for a missing SNI). Any other host is refused in replay, which never
/// reaches the network, and gets a blind byte tunnel when recording, with nothing recorded.
async fn connect(mut req: Request<Incoming>, peer: SocketAddr, shared: Shared) -> Response<Full<Bytes>> {
    let Some((host, port)) = req.uri().authority().and_then(|a| split_authority(a.as_str(), 443)) else {
        let message = format!("CONNECT needs host:port, got `{}`", req.uri());
        return unroutable(&shared.proxy, &req, "", message);
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    if shared.proxy.config.is_configured_host(&host) {
        let s = shared.clone();
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(up) => accept_tls(TokioIo::new(up), peer.to_string(), Some(host), port, s).await,
                Err(e) => tracing::warn!(%peer, "CONNECT upgrade failed: {e}"),
            }
        });
        return Response::new(Full::new(Bytes::new()));
    }
    if shared.proxy.recorder().is_none() {
        let mut f = Failure::not_intercepted(&host);
        f.message = format!("callvcr is replaying and does not tunnel to {host}:{port}: it is not a configured host (add it to `hosts` in proxy.yaml to intercept it)");
        return shared.proxy.refuse(f, "CONNECT", &format!("{host}:{port}"), "");
    }
    // Record mode: a blind tunnel for hosts we do not intercept; system name resolution applies.
    let upstream = match tokio::time::timeout(
        Duration::from_millis(shared.proxy.config.connect_timeout_ms),
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let e =
                UpstreamError { kind: FailureKind::Connect, host: host.clone(), detail: format!("cannot tunnel: {e}") };
            return shared.proxy.refuse(Failure::upstream(&e, &host), "CONNECT", &format!("{host}:{port}"), "");
        }
        Err(_) => {
            let e = UpstreamError {
                kind: FailureKind::Timeout,
                host: host.clone(),
                detail: "tunnel connect timed out".into(),
            };
            return shared.proxy.refuse(Failure::upstream(&e, &host), "CONNECT", &format!("{host}:{port}"), "");
        }
    };
    tracing::info!(%peer, "blind tunnel to {host}:{port} (not a configured host; nothing recorded)");
    tokio::spawn(async move {
        if let Ok(up) = on_upgrade.await {
            let mut client = TokioIo::new(up);
            let mut server = upstream;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
    });
    Response::new(Full::new(Bytes::new()))
}

/// Bytes an injected `malformed` fault writes instead of a response: not HTTP by any reading.
const GARBAGE: &[u8] = b"HTTP/1.1 2x0 Garbled\r\nContent-Length: banana\r\n\x00\xff\xfe\r\n\r\n{\"trunc";

/// What a `FaultIo` is doing to its connection.
#[derive(Debug, Clone, Copy)]
enum Cutting {
    /// Refuse every write (close).
    Closed,
    /// Writing `GARBAGE` from this offset, then close.
    Garbage(usize),
    /// Let this many more bytes through, then cut.
    Allow(usize),
}

/// An IO wrapper that carries out connection faults the proxy arms through a [`CutSwitch`]:
/// otherwise it passes every byte straight through.
struct FaultIo<T> {
    /// The client connection.
    inner: T,
    /// Where the proxy arms a cut for this connection.
    switch: Arc<CutSwitch>,
    /// The cut under way, once taken from the switch; `None` passes bytes through.
    cutting: Option<Cutting>,
    /// Told when an answer is being written.
    watch: Option<Arc<ConnWatch>>,
}

impl<T> FaultIo<T> {
    /// Wraps `inner`, passing bytes through until `switch` is armed.
    fn new(inner: T, switch: Arc<CutSwitch>, watch: Option<Arc<ConnWatch>>) -> FaultIo<T> {
        FaultIo { inner, switch, cutting: None, watch }
    }
}

/// The write error an injected cut gives hyper, which then drops the connection; `what` names the
/// fault in the message.
fn cut_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, format!("injected fault: {what}"))
}

impl<T: AsyncRead + Unpin> AsyncRead for FaultIo<T> {
    /// Passes reads through: faults cut only what the proxy writes.
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FaultIo<T> {
    /// Writes `buf`, or carries out an armed cut: the first write after arming takes the plan,
    /// then refuses (close), writes [`GARBAGE`] instead (malformed), or lets the allowed bytes
    /// through and flushes them (reset); each ends in an error that closes the connection.
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        if let Some(w) = &this.watch {
            w.wrote();
        }
        if this.cutting.is_none() {
            this.cutting = this.switch.take().map(|p| match p {
                CutPlan::Close => Cutting::Closed,
                CutPlan::Malformed => Cutting::Garbage(0),
                CutPlan::After(n) => Cutting::Allow(n),
            });
        }
        let mut inner = std::pin::Pin::new(&mut this.inner);
        match this.cutting {
            None => inner.poll_write(cx, buf),
            Some(Cutting::Closed) => Poll::Ready(Err(cut_error("connection closed before the response"))),
            Some(Cutting::Allow(left)) if left > 0 => {
                let n = left.min(buf.len());
                let written = std::task::ready!(inner.poll_write(cx, &buf[..n]))?;
                this.cutting = Some(Cutting::Allow(left - written));
                Poll::Ready(Ok(written))
            }
            Some(Cutting::Allow(_)) => {
                // Make sure what was let through leaves, then cut.
                std::task::ready!(inner.poll_flush(cx))?;
                this.cutting = Some(Cutting::Closed);
                Poll::Ready(Err(cut_error("connection reset mid-response")))
            }
            Some(Cutting::Garbage(mut at)) => {
                while at < GARBAGE.len() {
                    match inner.as_mut().poll_write(cx, &GARBAGE[at..]) {
                        Poll::Ready(Ok(n)) => at += n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {
                            this.cutting = Some(Cutting::Garbage(at));
                            return Poll::Pending;
                        }
                    }
                }
                this.cutting = Some(Cutting::Garbage(at));
                std::task::ready!(inner.poll_flush(cx))?;
                this.cutting = Some(Cutting::Closed);
                Poll::Ready(Err(cut_error("malformed response")))
            }
        }
    }

    /// Passes straight through while no cut is armed or under way; otherwise writes only the first
    /// non-empty buffer through [`FaultIo::poll_write`], so a cut counts its bytes exactly.
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.cutting.is_none() && !self.switch.is_armed() {
            if let Some(w) = &self.watch {
                w.wrote();
            }
            return std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        let first = bufs.iter().find(|b| !b.is_empty()).map(|b| &**b).unwrap_or(&[]);
        self.poll_write(cx, first)
    }

    /// As the wrapped connection.
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// Passed through.
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Passed through.
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
