//! Decoding a chunked HTTP/1.1 body into its payload and trailers, for HTTP/1.1 -> HTTP/2
//! translation (DATA frames carry the payload alone; trailers become a HEADERS frame). The
//! pass-through path does not decode: it uses [`super::chunked::ChunkedScanner`].
//!
//! The decoder is fed the front of a read buffer and says how many bytes it consumed and what
//! they were, so the caller can hand payload slices on without an intermediate copy.

use std::ops::Range;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Longest chunk-size line (with extensions) accepted.
const MAX_SIZE_LINE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DechunkError {
    #[error("invalid chunk size line")]
    BadSize,
    #[error("invalid chunk line ending")]
    BadLineEnd,
    #[error("invalid or too large trailers")]
    BadTrailers,
}

/// What the consumed bytes were.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Payload at this range of the buffer passed in.
    Data(Range<usize>),
    /// Framing only.
    Framing,
    /// Nothing can be decoded until more bytes arrive.
    NeedMore,
    /// The body is complete (trailers, if any, in [`Dechunker::trailers`]).
    Done,
}

#[derive(Debug)]
pub struct Dechunker {
    state: State,
    trailer_bytes: usize,
    max_trailer_bytes: usize,
    pub trailers: HeaderMap,
}

fn line_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

impl Dechunker {
    pub fn new(max_trailer_bytes: usize) -> Self {
        Self {
            state: State::Size,
            trailer_bytes: 0,
            max_trailer_bytes,
            trailers: HeaderMap::new(),
        }
    }

    /// Decodes from the front of `buf`; returns the bytes consumed and what they were.
    pub fn step(&mut self, buf: &[u8]) -> Result<(usize, Step), DechunkError> {
        match self.state {
            State::Done => Ok((0, Step::Done)),
            State::Size => {
                let Some(end) = line_end(buf) else {
                    return if buf.len() > MAX_SIZE_LINE {
                        Err(DechunkError::BadSize)
                    } else {
                        Ok((0, Step::NeedMore))
                    };
                };
                let line = &buf[..end];
                let hex = line.split(|&b| b == b';').next().unwrap_or(line);
                let hex = super::head::trim(hex);
                if hex.is_empty() || hex.len() > 15 {
                    return Err(DechunkError::BadSize);
                }
                let size = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or(DechunkError::BadSize)?;
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::Data(size)
                };
                Ok((end + 2, Step::Framing))
            }
            State::Data(left) => {
                if buf.is_empty() {
                    return Ok((0, Step::NeedMore));
                }
                let n = left.min(buf.len() as u64) as usize;
                self.state = if left == n as u64 {
                    State::DataEnd
                } else {
                    State::Data(left - n as u64)
                };
                Ok((n, Step::Data(0..n)))
            }
            State::DataEnd => {
                if buf.len() < 2 {
                    return Ok((0, Step::NeedMore));
                }
                if &buf[..2] != b"\r\n" {
                    return Err(DechunkError::BadLineEnd);
                }
                self.state = State::Size;
                Ok((2, Step::Framing))
            }
            State::Trailers => {
                let Some(end) = line_end(buf) else {
                    return if self.trailer_bytes + buf.len() > self.max_trailer_bytes {
                        Err(DechunkError::BadTrailers)
                    } else {
                        Ok((0, Step::NeedMore))
                    };
                };
                if end == 0 {
                    self.state = State::Done;
                    return Ok((2, Step::Done));
                }
                self.trailer_bytes += end + 2;
                if self.trailer_bytes > self.max_trailer_bytes {
                    return Err(DechunkError::BadTrailers);
                }
                let line = &buf[..end];
                let colon = line
                    .iter()
                    .position(|&b| b == b':')
                    .ok_or(DechunkError::BadTrailers)?;
                let name = HeaderName::from_bytes(super::head::trim(&line[..colon]))
                    .map_err(|_| DechunkError::BadTrailers)?;
                let value = HeaderValue::from_bytes(super::head::trim(&line[colon + 1..]))
                    .map_err(|_| DechunkError::BadTrailers)?;
                self.trailers.append(name, value);
                Ok((end + 2, Step::Framing))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `split` bytes; returns (payload, trailers, done).
    fn decode(input: &[u8], split: usize) -> Result<(Vec<u8>, HeaderMap, bool), DechunkError> {
        let mut d = Dechunker::new(1024);
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut out = Vec::new();
        loop {
            let (n, step) = d.step(&buf)?;
            match step {
                Step::Data(r) => out.extend_from_slice(&buf[r]),
                Step::Framing => {}
                Step::Done => return Ok((out, d.trailers, true)),
                Step::NeedMore => {
                    if fed == input.len() {
                        return Ok((out, d.trailers, false));
                    }
                    let k = split.min(input.len() - fed);
                    buf.extend_from_slice(&input[fed..fed + k]);
                    fed += k;
                }
            }
            buf.drain(..n);
        }
    }

    #[test]
    fn decodes_in_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-t: 1\r\nx-u:  two \r\n\r\n";
        for split in [1, 2, 3, 7, 100] {
            let (payload, trailers, done) = decode(body, split).unwrap();
            assert!(done, "split {split}");
            assert_eq!(payload, b"hello world", "split {split}");
            assert_eq!(trailers["x-t"], "1");
            assert_eq!(trailers["x-u"], "two");
        }
        let (payload, trailers, done) = decode(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap();
        assert!(done && trailers.is_empty());
        assert_eq!(payload, b"0123456789");
    }

    #[test]
    fn rejects_bad_framing() {
        let cases: &[(&[u8], DechunkError)] = &[
            (b"zz\r\n", DechunkError::BadSize),
            (b"\r\n", DechunkError::BadSize),
            (b"1234567890abcdef0\r\n", DechunkError::BadSize),
            (b"2\r\nabXY", DechunkError::BadLineEnd),
            (b"0\r\nno colon\r\n\r\n", DechunkError::BadTrailers),
        ];
        for (input, want) in cases {
            assert_eq!(decode(input, 100).unwrap_err(), *want, "{input:?}");
        }
        let (_, _, done) = decode(b"5\r\nhel", 100).unwrap();
        assert!(!done, "incomplete body is not done");
    }
}
