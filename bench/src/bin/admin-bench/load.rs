//! Steady HTTP/1.1 load at a fixed rate: `conns` keep-alive connections, each sending its
//! share of `rate` requests per second on a fixed schedule for a bounded time.
//!
//! Latency is from the actual send, except when the connection was still busy with the previous
//! response at the scheduled time: then from the schedule (the wait is the server's doing), so
//! a stall is not hidden by the requests it delays (coordinated omission). Any non-200, socket
//! error or wrong body counts as an error; the connection is then replaced.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::http::Conn;

#[derive(Default)]
pub struct Load {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per successful request.
    pub latencies: Vec<Duration>,
    /// Requests that left more than 5 ms after their scheduled time (the client fell behind).
    pub late: u64,
}

impl Load {
    fn merge(&mut self, other: Load) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
        self.late += other.late;
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

pub async fn run(
    web: SocketAddr,
    host: &'static str,
    rate: u32,
    conns: usize,
    for_: Duration,
) -> Load {
    let interval = Duration::from_secs_f64(conns as f64 / f64::from(rate.max(1)));
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + for_;
    let tasks: Vec<_> = (0..conns)
        .map(|i| {
            let first = start + interval.mul_f64(i as f64 / conns as f64);
            tokio::spawn(one_conn(web, host, first, interval, end))
        })
        .collect();
    let mut total = Load::default();
    for t in tasks {
        match t.await {
            Ok(l) => total.merge(l),
            Err(e) => total.error(format!("load task: {e}")),
        }
    }
    total
}

async fn one_conn(
    web: SocketAddr,
    host: &'static str,
    first: Instant,
    interval: Duration,
    end: Instant,
) -> Load {
    let mut out = Load::default();
    let mut conn: Option<Conn> = None;
    let mut scheduled = first;
    let mut prev_done = Instant::now();
    while scheduled < end {
        tokio::time::sleep_until(scheduled).await;
        let sent = Instant::now();
        if sent > scheduled + Duration::from_millis(5) {
            out.late += 1;
        }
        let from = if prev_done > scheduled {
            scheduled
        } else {
            sent
        };
        if conn.is_none() {
            match Conn::connect(web).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    out.error(format!("connect: {e}"));
                    prev_done = Instant::now();
                    scheduled += interval;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        match c.get(host, "/").await {
            Ok((200, body)) if body == b"ok" => {
                let done = Instant::now();
                out.ok += 1;
                out.latencies.push(done - from);
                prev_done = done;
            }
            Ok((status, body)) => {
                out.error(format!(
                    "status {status}, body {:?}",
                    String::from_utf8_lossy(&body)
                ));
                conn = None;
                prev_done = Instant::now();
            }
            Err(e) => {
                out.error(format!("request: {e}"));
                conn = None;
                prev_done = Instant::now();
            }
        }
        scheduled += interval;
    }
    out
}
