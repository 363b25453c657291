//! Frame-by-frame body relay between two HTTP/2 streams, with backpressure.
//!
//! A DATA chunk is taken from the source only when the previous one has been handed to the
//! destination within its flow-control capacity (`reserve_capacity` / `poll_capacity`), and the
//! source's window is released only after forwarding: a slow reader on one side stalls the writer
//! on the other, and per-stream memory stays bounded by the window sizes. Trailers are passed on.
//! A reset of the destination (its peer sent RST_STREAM) ends the relay at once.

use std::future::poll_fn;
use std::task::Poll;

use bytes::Bytes;
use h2::{RecvStream, SendStream};

/// Request bodies kept for a replay after REFUSED_STREAM / GOAWAY, at most this many bytes.
const REPLAY_LIMIT: usize = 64 * 1024;

/// Why a relay stopped.
#[derive(Debug)]
pub enum RelayError {
    /// The source failed or was reset by its peer.
    Source(h2::Error),
    /// The destination failed or its peer reset it.
    Dest(h2::Error),
    /// The destination's peer reset the stream with this reason.
    DestReset(h2::Reason),
    /// The request body passed the listener's `max_request_body_bytes`.
    TooLarge,
}

/// Sends `chunk` on `dst`, waiting for flow-control capacity.
pub async fn send_chunk(dst: &mut SendStream<Bytes>, mut chunk: Bytes) -> Result<(), RelayError> {
    while !chunk.is_empty() {
        dst.reserve_capacity(chunk.len());
        let cap = dst.capacity();
        if cap == 0 {
            match poll_fn(|cx| dst.poll_capacity(cx)).await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(RelayError::Dest(e)),
                None => return Err(RelayError::DestReset(h2::Reason::STREAM_CLOSED)),
            }
        }
        let part = chunk.split_to(cap.min(chunk.len()));
        dst.send_data(part, false).map_err(RelayError::Dest)?;
    }
    Ok(())
}

/// The next DATA chunk of `src`, or the destination's reset, whichever comes first.
async fn next_chunk(
    src: &mut RecvStream,
    dst: &mut SendStream<Bytes>,
) -> Result<Option<Bytes>, RelayError> {
    poll_fn(|cx| {
        if let Poll::Ready(r) = dst.poll_reset(cx) {
            return Poll::Ready(Err(match r {
                Ok(reason) => RelayError::DestReset(reason),
                Err(e) => RelayError::Dest(e),
            }));
        }
        src.poll_data(cx)
            .map(|d| d.transpose().map_err(RelayError::Source))
    })
    .await
}

/// Ends `dst` with `src`'s trailers, or with an empty END_STREAM DATA frame.
async fn finish(src: &mut RecvStream, dst: &mut SendStream<Bytes>) -> Result<bool, RelayError> {
    match poll_fn(|cx| src.poll_trailers(cx)).await {
        Ok(Some(t)) => {
            dst.send_trailers(t).map_err(RelayError::Dest)?;
            Ok(true)
        }
        Ok(None) => {
            dst.send_data(Bytes::new(), true)
                .map_err(RelayError::Dest)?;
            Ok(false)
        }
        Err(e) => Err(RelayError::Source(e)),
    }
}

/// Relays `src` to `dst` to the end (response direction; nothing kept for replay).
pub async fn relay(src: &mut RecvStream, dst: &mut SendStream<Bytes>) -> Result<(), RelayError> {
    loop {
        match next_chunk(src, dst).await? {
            Some(chunk) => {
                let n = chunk.len();
                send_chunk(dst, chunk).await?;
                let _ = src.flow_control().release_capacity(n);
            }
            None => return finish(src, dst).await.map(|_| ()),
        }
    }
}

/// A downstream request body relayed upstream, keeping what it forwarded (up to
/// [`REPLAY_LIMIT`]; `Bytes` clones share memory) until the upstream answers, so that a request
/// the upstream refused unprocessed can be sent again on another connection.
pub struct RequestBody {
    pub src: RecvStream,
    replay: Vec<Bytes>,
    replay_len: usize,
    replayable: bool,
    ended: bool,
    /// Body bytes taken from the source so far.
    received: u64,
    /// Most body bytes accepted (0 = unlimited).
    limit: u64,
}

impl RequestBody {
    pub fn new(src: RecvStream, limit: u64) -> Self {
        let ended = src.is_end_stream();
        Self {
            src,
            replay: Vec::new(),
            replay_len: 0,
            replayable: true,
            ended,
            received: 0,
            limit,
        }
    }

    /// Whole body (so far) still held: the request can be sent again.
    pub fn replayable(&self) -> bool {
        self.replayable
    }

    /// The upstream answered: nothing will be replayed.
    pub fn stop_replay(&mut self) {
        self.replayable = false;
        self.replay = Vec::new();
    }

    /// Relays the body to `dst`: first what was kept from an earlier attempt, then the rest.
    /// Stops keeping chunks once `answered` is set (the upstream has sent its response head).
    pub async fn send(
        &mut self,
        dst: &mut SendStream<Bytes>,
        answered: &std::cell::Cell<bool>,
    ) -> Result<(), RelayError> {
        for i in 0..self.replay.len() {
            let chunk = self.replay[i].clone();
            send_chunk(dst, chunk).await?;
        }
        if self.ended {
            return dst.send_data(Bytes::new(), true).map_err(RelayError::Dest);
        }
        loop {
            match next_chunk(&mut self.src, dst).await? {
                Some(chunk) => {
                    let n = chunk.len();
                    self.received += n as u64;
                    if self.limit > 0 && self.received > self.limit {
                        return Err(RelayError::TooLarge);
                    }
                    if answered.get() && self.replayable {
                        self.stop_replay();
                    }
                    if self.replayable {
                        if self.replay_len + n <= REPLAY_LIMIT {
                            self.replay_len += n;
                            self.replay.push(chunk.clone());
                        } else {
                            self.stop_replay();
                        }
                    }
                    send_chunk(dst, chunk).await?;
                    let _ = self.src.flow_control().release_capacity(n);
                }
                None => {
                    if finish(&mut self.src, dst).await? {
                        // Trailers are not kept for a replay.
                        self.stop_replay();
                    }
                    self.ended = true;
                    return Ok(());
                }
            }
        }
    }
}
