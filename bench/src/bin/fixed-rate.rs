//! `fixed-rate URL_ADDR RATE SECONDS [CONNS]`: HTTP/1.1 `GET /` at a fixed total rate over
//! CONNS keep-alive connections (default 10) for SECONDS, then prints one line:
//! `sent=N ok=N err=N p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=..`.
//!
//! Latency is measured from each request's *scheduled* send time (not from when it was
//! actually written), so a stall is charged to every request it delays (no coordinated
//! omission). Used by bench/mesh.sh to compare a direct path with the two-hop mesh.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response with a content-length body; returns its status.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut tmp).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            buf.drain(..end + 4 + len);
            return Ok(status);
        }
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// One connection's share: requests at `interval`, starting at `start + offset`.
async fn conn(
    addr: SocketAddr,
    start: Instant,
    offset: Duration,
    interval: Duration,
    end: Instant,
) -> (Vec<u64>, u64) {
    let mut lat = Vec::new();
    let mut errors = 0u64;
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(_) => return (lat, 1),
    };
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(8192);
    let mut next = start + offset;
    while next < end {
        // tokio's timer has 1 ms granularity: sleep to just before the slot, then yield until
        // it (the load generator has a core of its own), so the measurement floor is µs.
        let early = next.checked_sub(Duration::from_millis(2)).unwrap_or(next);
        tokio::time::sleep_until(early.into()).await;
        while Instant::now() < next {
            tokio::task::yield_now().await;
        }
        let ok = async {
            s.write_all(REQUEST).await?;
            read_response(&mut s, &mut buf).await
        }
        .await;
        match ok {
            Ok(200) => lat.push(next.elapsed().as_micros() as u64),
            _ => {
                errors += 1;
                // Reconnect for the next request.
                match TcpStream::connect(addr).await {
                    Ok(n) => {
                        s = n;
                        buf.clear();
                    }
                    Err(_) => return (lat, errors),
                }
            }
        }
        next += interval;
    }
    (lat, errors)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: fixed-rate ADDR RATE SECONDS [CONNS]");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR is ip:port");
    let rate: f64 = args[2].parse().expect("RATE is requests per second");
    let secs: f64 = args[3].parse().expect("SECONDS");
    let conns: usize = args.get(4).map_or(10, |c| c.parse().expect("CONNS"));
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|i| {
            let offset = interval.mul_f64(i as f64 / conns as f64);
            tokio::spawn(conn(addr, start, offset, interval, end))
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let q = |p: f64| -> u64 {
        if all.is_empty() {
            return 0;
        }
        all[((all.len() as f64 * p) as usize).min(all.len() - 1)]
    };
    println!(
        "sent={} ok={} err={} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        all.len() as u64 + errors,
        all.len(),
        errors,
        q(0.50),
        q(0.90),
        q(0.99),
        q(0.999),
        all.last().copied().unwrap_or(0)
    );
}
