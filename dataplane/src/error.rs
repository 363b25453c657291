//! Hot-path errors: which side failed and what the client is told, mapped to a status in one place.

use std::io;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request head too large")]
    HeadTooLarge,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("no route")]
    NoRoute,
    #[error("method not allowed: {0}")]
    MethodNotAllowed(&'static str),
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    #[error("upstream connect failed: {0}")]
    UpstreamConnect(io::Error),
    #[error("upstream connection failed: {0}")]
    UpstreamIo(io::Error),
    #[error("upstream closed the connection before responding")]
    UpstreamClosed,
    #[error("invalid upstream response: {0}")]
    UpstreamProtocol(&'static str),
    #[error("upstream timed out")]
    UpstreamTimeout,
    #[error("client connection failed: {0}")]
    DownstreamIo(io::Error),
    #[error("client timed out")]
    DownstreamTimeout,
    #[error("upstream http/2 error: {0}")]
    UpstreamH2(h2::Error),
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// An authorization policy denied the request.
    #[error("denied by policy {0}")]
    Forbidden(std::sync::Arc<str>),
}

impl ProxyError {
    /// The HTTP status a client gets for this failure.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::BadRequest(_) => 400,
            ProxyError::HeadTooLarge => 431,
            ProxyError::BodyTooLarge => 413,
            ProxyError::NoRoute => 404,
            ProxyError::MethodNotAllowed(_) => 405,
            ProxyError::NoHealthyUpstream => 503,
            ProxyError::UpstreamConnect(_)
            | ProxyError::UpstreamIo(_)
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamProtocol(_)
            | ProxyError::UpstreamH2(_)
            | ProxyError::Unsupported(_) => 502,
            ProxyError::UpstreamTimeout => 504,
            ProxyError::DownstreamIo(_) => 400,
            ProxyError::DownstreamTimeout => 408,
            ProxyError::Forbidden(_) => 403,
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::HeadTooLarge
            | ProxyError::BodyTooLarge
            | ProxyError::MethodNotAllowed(_)
            | ProxyError::DownstreamIo(_)
            | ProxyError::DownstreamTimeout
            | ProxyError::Forbidden(_) => Side::Downstream,
            ProxyError::NoRoute | ProxyError::Unsupported(_) => Side::Internal,
            _ => Side::Upstream,
        }
    }

    /// The short body of the error response.
    pub fn body(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(why) => why,
            ProxyError::HeadTooLarge => "request header fields too large",
            ProxyError::BodyTooLarge => "request body too large",
            ProxyError::NoRoute => "no route matched the request",
            ProxyError::MethodNotAllowed(why) => why,
            ProxyError::NoHealthyUpstream => "no healthy upstream endpoint",
            ProxyError::UpstreamConnect(_) => "upstream connect failed",
            ProxyError::UpstreamIo(_) | ProxyError::UpstreamClosed => "upstream connection reset",
            ProxyError::UpstreamProtocol(_) => "invalid response from upstream",
            ProxyError::UpstreamTimeout => "upstream request timeout",
            ProxyError::DownstreamIo(_) => "bad request",
            ProxyError::DownstreamTimeout => "request timeout",
            ProxyError::UpstreamH2(_) => "upstream http/2 error",
            ProxyError::Unsupported(why) => why,
            ProxyError::Forbidden(_) => "denied by authorization policy",
        }
    }
}

/// gRPC status codes Shoal answers with when it fails a call itself.
pub mod grpc_status {
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const PERMISSION_DENIED: u32 = 7;
}

impl ProxyError {
    /// The gRPC status a gRPC client gets for this failure (the one place this is decided).
    pub fn grpc_status(&self) -> u32 {
        use grpc_status::*;
        match self {
            ProxyError::NoRoute | ProxyError::MethodNotAllowed(_) => UNIMPLEMENTED,
            ProxyError::HeadTooLarge | ProxyError::BodyTooLarge => RESOURCE_EXHAUSTED,
            ProxyError::UpstreamTimeout | ProxyError::DownstreamTimeout => DEADLINE_EXCEEDED,
            ProxyError::NoHealthyUpstream
            | ProxyError::UpstreamConnect(_)
            | ProxyError::UpstreamIo(_)
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamProtocol(_)
            | ProxyError::UpstreamH2(_)
            | ProxyError::Unsupported(_) => UNAVAILABLE,
            ProxyError::BadRequest(_) | ProxyError::DownstreamIo(_) => INTERNAL,
            ProxyError::Forbidden(_) => PERMISSION_DENIED,
        }
    }
}

/// Reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}
