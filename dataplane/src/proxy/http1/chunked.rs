//! A streaming scanner for `Transfer-Encoding: chunked` (RFC 9112 §7.1).
//!
//! The proxy forwards chunked bodies byte for byte (chunk extensions and trailers included); the
//! scanner only finds where the message ends, so nothing is re-encoded or buffered. It accepts the
//! bytes in any split, one call per read, and reports how many of them belong to the body.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: u8,
    },
    /// Chunk extension or whitespace after the size, up to CRLF.
    Ext,
    SizeLf,
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkedError {
    BadSize,
    SizeTooLong,
    BadLineEnd,
    TrailersTooLarge,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkedError::BadSize => "invalid chunk size",
            ChunkedError::SizeTooLong => "chunk size too long",
            ChunkedError::BadLineEnd => "invalid chunk line ending",
            ChunkedError::TrailersTooLarge => "trailers too large",
        })
    }
}

#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    size: u64,
    /// Payload bytes seen (for body limits).
    pub payload: u64,
    trailer_bytes: usize,
    max_trailer_bytes: usize,
}

impl ChunkedScanner {
    pub fn new(max_trailer_bytes: usize) -> Self {
        Self {
            state: State::Size { digits: 0 },
            size: 0,
            payload: 0,
            trailer_bytes: 0,
            max_trailer_bytes,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `buf`; returns how many leading bytes belong to the chunked body. Fewer than
    /// `buf.len()` only when the body ended inside `buf` (then `is_done()`).
    pub fn scan(&mut self, buf: &[u8]) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.state {
                State::Done => return Ok(i),
                State::Size { digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 15 {
                            return Err(ChunkedError::SizeTooLong);
                        }
                        let v = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.size = self.size * 16 + v;
                        self.state = State::Size { digits: digits + 1 };
                    }
                    b';' | b' ' | b'\t' if digits > 0 => self.state = State::Ext,
                    b'\r' if digits > 0 => self.state = State::SizeLf,
                    _ => return Err(ChunkedError::BadSize),
                },
                State::Ext => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(ChunkedError::BadLineEnd),
                    _ => {}
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnd);
                    }
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data { left: self.size }
                    };
                    self.size = 0;
                }
                State::Data { left } => {
                    let n = (left.min((buf.len() - i) as u64)) as usize;
                    self.payload += n as u64;
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkedError::BadLineEnd);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnd);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::FinalLf;
                    } else {
                        self.trailer_byte()?;
                        self.state = State::TrailerLine;
                    }
                }
                State::TrailerLine => {
                    self.trailer_byte()?;
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnd);
                    }
                    self.state = State::TrailerStart;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnd);
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
            }
            i += 1;
        }
        Ok(i)
    }

    fn trailer_byte(&mut self) -> Result<(), ChunkedError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.max_trailer_bytes {
            return Err(ChunkedError::TrailersTooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8], split: usize) -> Result<(usize, u64, bool), ChunkedError> {
        let mut s = ChunkedScanner::new(1024);
        let mut used = 0;
        for part in input.chunks(split.max(1)) {
            let n = s.scan(part)?;
            used += n;
            if s.is_done() {
                break;
            }
        }
        Ok((used, s.payload, s.is_done()))
    }

    #[test]
    fn cases() {
        let cases: &[(&[u8], Result<(usize, u64, bool), ChunkedError>)] = &[
            (b"0\r\n\r\n", Ok((5, 0, true))),
            (b"5\r\nhello\r\n0\r\n\r\n", Ok((15, 5, true))),
            (b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1", Ok((15, 5, true))),
            (b"A;ext=1\r\n0123456789\r\n0\r\n\r\n", Ok((26, 10, true))),
            (
                b"3\r\nabc\r\n0\r\nx-trailer: v\r\nx-b: 2\r\n\r\n",
                Ok((35, 3, true)),
            ),
            (b"ff\r\n", Ok((4, 0, false))),
            (b"g\r\n", Err(ChunkedError::BadSize)),
            (b"\r\n", Err(ChunkedError::BadSize)),
            (b"5\nhello", Err(ChunkedError::BadSize)),
            (b"3\r\nabcX", Err(ChunkedError::BadLineEnd)),
            (b"1234567890abcdef0\r\n", Err(ChunkedError::SizeTooLong)),
        ];
        for (input, want) in cases {
            for split in [1, 2, 3, 7, 1000] {
                assert_eq!(
                    &scan_all(input, split),
                    want,
                    "input {:?} split {split}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn trailer_limit() {
        let mut s = ChunkedScanner::new(8);
        assert_eq!(
            s.scan(b"0\r\nx-long-trailer: 1\r\n\r\n"),
            Err(ChunkedError::TrailersTooLarge)
        );
    }
}
