//! Parsing and classifying an arbitrary request head must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_dataplane::proxy::http1::head::{request_info, response_info};

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = req.parse(data) {
        let _ = request_info(req.version.unwrap_or(1), req.headers);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = resp.parse(data) {
        let _ = response_info(resp.code.unwrap_or(200), resp.version.unwrap_or(1), false, resp.headers);
    }
});
