//! Responses Shoal writes itself: errors, direct responses and redirects.

use std::io::Write;

use crate::error::ProxyError;

use super::head::{put_header, status_line};

/// An error response: status from the error, a one-line plain-text reason.
pub fn error(out: &mut Vec<u8>, e: &ProxyError, close: bool, request_id: Option<&[u8; 36]>) {
    let body = e.body();
    out.clear();
    status_line(out, e.status());
    out.extend_from_slice(b"content-type: text/plain\r\n");
    let _ = write!(out, "content-length: {}\r\n", body.len() + 1);
    if let Some(id) = request_id {
        put_header(out, b"x-request-id", id);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out.push(b'\n');
}

/// A configured response (direct response or redirect).
pub fn local(
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    location: Option<&str>,
    close: bool,
    head_request: bool,
    request_id: &[u8; 36],
) {
    out.clear();
    status_line(out, status);
    if let Some(loc) = location {
        put_header(out, b"location", loc.as_bytes());
    }
    if !body.is_empty() {
        out.extend_from_slice(b"content-type: text/plain\r\n");
    }
    let _ = write!(out, "content-length: {}\r\n", body.len());
    put_header(out, b"x-request-id", request_id);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(body);
    }
}
