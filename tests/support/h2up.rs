//! A real HTTP/2 (h2c) upstream for tests, written with the `h2` crate on tokio, and an h2c
//! client helper.
//!
//! Paths: `/echo` (default) answers 200 with `x-echo-path`, `x-echo-headers` and the request body
//! streamed back (flow-controlled), then trailers `x-trailer: done` plus `x-got-<name>` for each
//! request trailer; `/delay/<ms>` waits first; `/big/<n>` sends n bytes (flow-controlled) and
//! records when it finished; `/hang` never answers and counts the client's cancel (RST_STREAM);
//! `/refuse-once` refuses the first such stream (REFUSED_STREAM) and echoes later ones;
//! `/die-mid` sends headers and 1 KiB, then the upstream drops the whole connection;
//! `/reset` resets the stream with INTERNAL_ERROR before answering; `/reset-mid` sends headers and
//! 1 KiB, then resets with INTERNAL_ERROR.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct Stats {
    pub accepts: AtomicUsize,
    pub streams: AtomicUsize,
    pub hangs: AtomicUsize,
    pub cancels: AtomicUsize,
    pub big_done: AtomicBool,
    pub refused: AtomicUsize,
}

pub struct H2Upstream {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
}

pub async fn h2_echo() -> H2Upstream {
    h2_echo_with(None, None).await
}

/// Like [`h2_echo`]; with `Some(n)`, each connection says GOAWAY (graceful) after n streams;
/// `max_streams` is its SETTINGS_MAX_CONCURRENT_STREAMS.
pub async fn h2_echo_with(goaway_after: Option<usize>, max_streams: Option<u32>) -> H2Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(Stats::default());
    let st = stats.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            st.accepts.fetch_add(1, Ordering::SeqCst);
            let st = st.clone();
            tokio::spawn(async move {
                // A connection window of 8 MiB (h2's default is 64 KiB) also raises h2's budget
                // for buffered small DATA frames (half the window) above 200 streams' worth.
                let mut b = h2::server::Builder::new();
                b.initial_connection_window_size(8 << 20)
                    .initial_window_size(1 << 20);
                if let Some(m) = max_streams {
                    b.max_concurrent_streams(m);
                }
                let Ok(mut conn) = b.handshake(tcp).await else {
                    return;
                };
                let mut served = 0;
                let die = Arc::new(tokio::sync::Notify::new());
                loop {
                    let next = tokio::select! {
                        n = conn.accept() => n,
                        _ = die.notified() => return, // drops the connection: TCP close
                    };
                    let Some(Ok((req, respond))) = next else {
                        break;
                    };
                    st.streams.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve_stream(st.clone(), req, respond, die.clone()));
                    served += 1;
                    if goaway_after == Some(served) {
                        conn.graceful_shutdown();
                    }
                }
            });
        }
    });
    H2Upstream { addr, stats }
}

async fn send_all(s: &mut SendStream<Bytes>, mut data: Bytes) -> bool {
    while !data.is_empty() {
        s.reserve_capacity(data.len());
        if s.capacity() == 0 {
            match poll_fn(|cx| s.poll_capacity(cx)).await {
                Some(Ok(_)) => continue,
                _ => return false,
            }
        }
        let n = s.capacity().min(data.len());
        if s.send_data(data.split_to(n), false).is_err() {
            return false;
        }
    }
    true
}

async fn serve_stream(
    st: Arc<Stats>,
    req: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    die: Arc<tokio::sync::Notify>,
) {
    let path = req.uri().path().to_string();
    let headers: Vec<String> = req
        .headers()
        .iter()
        .map(|(n, v)| format!("{}: {}", n, String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut body = req.into_body();
    if path == "/hang" {
        st.hangs.fetch_add(1, Ordering::SeqCst);
        let r = poll_fn(|cx| respond.poll_reset(cx)).await;
        if r.is_ok() {
            st.cancels.fetch_add(1, Ordering::SeqCst);
        }
        return;
    }
    if path == "/refuse-once" && st.refused.fetch_add(1, Ordering::SeqCst) == 0 {
        respond.send_reset(Reason::REFUSED_STREAM);
        return;
    }
    if path == "/reset" {
        respond.send_reset(Reason::INTERNAL_ERROR);
        return;
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    let resp = http::Response::builder()
        .header("x-echo-path", &path)
        .header("x-echo-authority", authority)
        .header("x-echo-headers", headers.join("|"))
        .header("connection-specific-test", "kept")
        .body(())
        .unwrap();
    let Ok(mut send) = respond.send_response(resp, false) else {
        return;
    };
    if path == "/die-mid" {
        send_all(&mut send, Bytes::from(vec![b'x'; 1024])).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        die.notify_one();
        // Keep the stream handle: dropping it would send RST_STREAM before the close.
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(send);
        return;
    }
    if path == "/reset-mid" {
        send_all(&mut send, Bytes::from(vec![b'x'; 1024])).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        send.send_reset(Reason::INTERNAL_ERROR);
        return;
    }
    if let Some(n) = path.strip_prefix("/big/") {
        let n: usize = n.parse().unwrap();
        let chunk = Bytes::from(vec![7u8; 64 * 1024]);
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk.len());
            if !send_all(&mut send, chunk.slice(..k)).await {
                return;
            }
            left -= k;
        }
        st.big_done.store(true, Ordering::SeqCst);
        let _ = send.send_data(Bytes::new(), true);
        return;
    }
    // Echo the body back as it arrives.
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        let n = chunk.len();
        if !send_all(&mut send, chunk).await {
            return;
        }
        let _ = body.flow_control().release_capacity(n);
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-trailer", "done".parse().unwrap());
    if let Ok(Some(t)) = body.trailers().await {
        for (name, v) in &t {
            trailers.insert(
                http::HeaderName::from_bytes(format!("x-got-{name}").as_bytes()).unwrap(),
                v.clone(),
            );
        }
    }
    let _ = send.send_trailers(trailers);
}

/// An h2c client connection to `addr` (driven by a spawned task).
pub async fn client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect to shoal");
    // Like the upstream, a connection window large enough that h2's budget for buffered small
    // DATA frames (half the window) covers hundreds of concurrent streams.
    let (send, conn) = h2::client::Builder::new()
        .initial_connection_window_size(8 << 20)
        .handshake(tcp)
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// A request to `path` with `authority` and extra headers.
pub fn request(authority: &str, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{path}"));
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap()
}

/// Reads a whole body, releasing flow-control capacity as it goes.
pub async fn read_body(body: &mut RecvStream) -> Result<Vec<u8>, h2::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        out.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok(out)
}

/// An h2 "zombie" upstream: answers the handshake (SETTINGS, SETTINGS ACK, the first PING), then
/// never answers anything again while keeping the connection open, like a hung peer.
pub async fn h2_zombie() -> super::upstream::Upstream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    super::upstream::raw_server(|mut s: TcpStream| async move {
        if s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.is_err() {
            return;
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut tmp = [0u8; 4096];
        let mut preface = false;
        let mut pinged = false;
        loop {
            let n = match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&tmp[..n]);
            if !preface {
                if buf.len() < 24 {
                    continue;
                }
                buf.drain(..24);
                preface = true;
            }
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (buf[3], buf[4]);
                let payload: Vec<u8> = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                let ack = flags & 1 == 1;
                if kind == 4 && !ack {
                    let _ = s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await;
                }
                if kind == 6 && !ack && !pinged {
                    pinged = true;
                    let mut frame = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                    frame.extend_from_slice(&payload);
                    let _ = s.write_all(&frame).await;
                }
            }
        }
    })
    .await
}
