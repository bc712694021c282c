//! Recording: frames relayed both ways between the SDK and the platform, each stored (before it
//! is relayed) with its offset and what it followed.

use super::*;

/// What a recording session needs from the proxy: where frames go, and what REST exchange the
/// session's client last started.
pub(crate) trait RecordSink: Send + Sync + 'static {
    /// Stores one frame (flushed before it is relayed).
    fn store(&self, frame: Frame) -> futures_util::future::BoxFuture<'static, Result<(), String>>;
    /// The sequence number and start time (ms, monotonic) of the last REST exchange by `client`.
    fn last_rest(&self, client: &str) -> Option<(u64, u64)>;
}

/// Relays one recorded session until either side closes, storing every frame.
pub(crate) async fn record(
    client: hyper::upgrade::Upgraded,
    upstream: hyper::upgrade::Upgraded,
    session: u64,
    client_key: String,
    sink: Arc<dyn RecordSink>,
    max: usize,
    label: String,
) {
    let mut c = wrap(client, Role::Server, max).await;
    let mut u = wrap(upstream, Role::Client, max).await;
    let started = Clock::instant();
    let mut n: u32 = 0;
    // The last client message: (its n, when it arrived, on the shared monotonic scale).
    let mut last_client: Option<(u32, u64)> = None;
    let (mut pings_to_upstream, mut pings_to_client) = (0u32, 0u32);
    tracing::info!(session, %label, "recording WebSocket session");
    loop {
        let (dir, msg) = tokio::select! {
            m = c.next() => (Dir::Client, m),
            m = u.next() => (Dir::Server, m),
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                match close_for(&e) {
                    Some((code, why)) => {
                        tracing::warn!(session, side = ?dir, "WebSocket {why}; closing with {}", u16::from(code));
                        let frame = Message::Close(Some(CloseFrame { code, reason: why.clone().into() }));
                        let _ =
                            if dir == Dir::Client { c.send(frame.clone()).await } else { u.send(frame.clone()).await };
                        let _ = if dir == Dir::Client { u.send(frame).await } else { c.send(frame).await };
                    }
                    None => tracing::info!(session, side = ?dir, "WebSocket connection ended: {e}"),
                }
                break;
            }
            None => {
                tracing::info!(session, side = ?dir, "WebSocket connection closed");
                break;
            }
        };
        if let Message::Frame(_) = msg {
            continue;
        }
        let (kind, data, close_code, close_reason) = frame_parts(&msg);
        let at_ms = started.elapsed().as_millis() as u64;
        let after = match dir {
            Dir::Client => None,
            Dir::Server => {
                let rest = sink.last_rest(&client_key);
                match (rest, last_client) {
                    (Some((seq, t_rest)), Some((cn, t_client))) => {
                        Some(if t_client > t_rest { Anchor::Client(cn) } else { Anchor::Rest(seq) })
                    }
                    (Some((seq, _)), None) => Some(Anchor::Rest(seq)),
                    (None, Some((cn, _))) => Some(Anchor::Client(cn)),
                    (None, None) => None,
                }
            }
        };
        let frame = Frame {
            session,
            n,
            dir,
            at_ms,
            kind,
            data: Body { bytes: data, encoding: None },
            close_code,
            close_reason,
            after,
        };
        if dir == Dir::Client && matches!(kind, FrameKind::Text | FrameKind::Binary) {
            last_client = Some((n, mono_ms()));
        }
        n += 1;
        if let Err(e) = sink.store(frame).await {
            tracing::error!(session, "could not store a WebSocket frame: {e}");
        }
        // Each side's WebSocket answers a ping by itself, so a pong that answers a relayed ping is
        // recorded but not relayed (the other side already had its pong).
        match (&msg, dir) {
            (Message::Ping(_), Dir::Client) => pings_to_upstream += 1,
            (Message::Ping(_), Dir::Server) => pings_to_client += 1,
            (Message::Pong(_), Dir::Server) if pings_to_upstream > 0 => {
                pings_to_upstream -= 1;
                continue;
            }
            (Message::Pong(_), Dir::Client) if pings_to_client > 0 => {
                pings_to_client -= 1;
                continue;
            }
            _ => {}
        }
        let closing = matches!(msg, Message::Close(_));
        let sent = match dir {
            Dir::Client => u.send(msg).await,
            Dir::Server => c.send(msg).await,
        };
        if let Err(e) = sent {
            tracing::info!(session, "WebSocket relay ended: {e}");
            break;
        }
        if closing {
            // Let the close handshake finish on both sides.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                let _ = c.close(None).await;
                let _ = u.close(None).await;
            })
            .await;
            break;
        }
    }
    tracing::info!(session, frames = n, "WebSocket session recorded");
}
