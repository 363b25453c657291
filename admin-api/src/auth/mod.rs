//! Who may call the admin API.
//!
//! On loopback (`admin.grpc` 127.0.0.1/::1) the API is plaintext and every local caller may
//! call everything ([`Access::Loopback`]). Anywhere else it is TLS ([`incoming`]): the server
//! presents this proxy's SVID and requests, without requiring, a client SVID; the connection
//! carries the peer's verified SPIFFE ID ([`PeerInfo`], tonic's connect info). Then every call
//! goes through [`AuthLayer`], which decides by the gRPC method ([`Access::authorize`]):
//!
//! | method | allowed for |
//! |---|---|
//! | `CaService/GetTrustBundle` | anyone (the bundle is public; a new proxy needs it) |
//! | `CaService/SignCsr` | a peer in `admin.allow`: any ID of the trust domain; any other peer with an SVID: only its own ID (renewal); no certificate but `authorization: Bearer TOKEN` with a join token: the token's patterns ([`tokens`]) |
//! | everything else (`AdminService`, `RotateRoot`, reflection) | a peer in `admin.allow` |
//!
//! A refusal is `UNAUTHENTICATED` (no or a wrong credential) or `PERMISSION_DENIED` (known
//! caller, not allowed), logged with the method, the peer's address and ID; a token is never
//! logged (a token is named by its line in the file). What `SignCsr` may sign travels to the
//! CA service as a [`CsrGrant`] request extension; the `authorization` header is removed before
//! the services see the request.
//!
//! The client side (the identity agent, `shoal ctl`) connects with [`client::tls_channel`].

pub mod client;
pub mod incoming;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use shoal_ca::{IdPattern, SpiffeId};
use tonic::Status;

pub use tokens::{JoinTokens, TokenFileError};

/// The connection facts a TLS admin connection carries into each request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: Option<SocketAddr>,
    /// The SPIFFE ID of the client certificate (verified at the handshake), if one was sent.
    pub id: Option<SpiffeId>,
}

/// What a `SignCsr` caller may get signed (a request extension set by [`AuthLayer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrGrant {
    /// Any workload ID of the CA's trust domain.
    Any,
    /// Only IDs these patterns match; `caller` describes who asked (for logs).
    Only {
        allowed: Vec<IdPattern>,
        caller: String,
    },
}

const SIGN_CSR: &str = "/shoal.ca.v1.CaService/SignCsr";
const GET_TRUST_BUNDLE: &str = "/shoal.ca.v1.CaService/GetTrustBundle";

/// The admin API's access rules (see the module docs).
#[derive(Debug)]
pub enum Access {
    /// Plaintext on loopback: everything for everyone local.
    Loopback,
    /// TLS elsewhere: `allow` may call everything; see the module docs for the rest.
    Mtls {
        allow: Vec<IdPattern>,
        tokens: JoinTokens,
    },
}

impl Access {
    /// Decides one call. `Ok` carries the grant for `SignCsr`.
    pub fn authorize(
        &self,
        method: &str,
        peer: Option<&PeerInfo>,
        bearer: Option<&str>,
    ) -> Result<Option<CsrGrant>, Status> {
        let (allow, tokens) = match self {
            Access::Loopback => return Ok(Some(CsrGrant::Any)),
            Access::Mtls { allow, tokens } => (allow, tokens),
        };
        let id = peer.and_then(|p| p.id.as_ref());
        if let Some(id) = id
            && allow.iter().any(|p| p.matches(id))
        {
            return Ok(Some(CsrGrant::Any));
        }
        if method == GET_TRUST_BUNDLE {
            return Ok(None);
        }
        if method == SIGN_CSR {
            if let Some(id) = id {
                // Renewal: an SVID holder may only get its own ID again.
                return Ok(Some(CsrGrant::Only {
                    allowed: vec![IdPattern::Exact(id.clone())],
                    caller: id.to_string(),
                }));
            }
            return match bearer.map(|t| tokens.find(t)) {
                Some(Some(g)) => Ok(Some(CsrGrant::Only {
                    allowed: g.allowed,
                    caller: format!("join token (line {})", g.line),
                })),
                Some(None) => Err(Status::unauthenticated("the join token is not valid")),
                None => Err(Status::unauthenticated(
                    "SignCsr needs a client certificate or a join token",
                )),
            };
        }
        match id {
            Some(id) => Err(Status::permission_denied(format!(
                "{id} is not in admin.allow"
            ))),
            None => Err(Status::unauthenticated(
                "the admin API needs a client certificate (SVID) in admin.allow",
            )),
        }
    }
}

/// The `authorization: Bearer TOKEN` value, removed from the headers either way.
fn take_bearer(headers: &mut http::HeaderMap) -> Option<String> {
    let value = headers.remove(http::header::AUTHORIZATION)?;
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// A tower layer applying [`Access::authorize`] to every call of the admin server.
#[derive(Clone)]
pub struct AuthLayer {
    access: Arc<Access>,
}

impl AuthLayer {
    pub fn new(access: Arc<Access>) -> Self {
        Self { access }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            access: self.access.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    access: Arc<Access>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower_service::Service<http::Request<B>> for AuthService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let bearer = take_bearer(req.headers_mut());
        let peer = req.extensions().get::<PeerInfo>().cloned();
        let method = req.uri().path().to_string();
        match self
            .access
            .authorize(&method, peer.as_ref(), bearer.as_deref())
        {
            Ok(grant) => {
                if let Some(g) = grant {
                    req.extensions_mut().insert(g);
                }
                Box::pin(self.inner.call(req))
            }
            Err(status) => {
                let addr = peer.as_ref().and_then(|p| p.addr);
                let id = peer.as_ref().and_then(|p| p.id.as_ref());
                tracing::warn!(
                    method = %method,
                    peer = ?addr,
                    id = %id.map_or("-".to_string(), ToString::to_string),
                    token = bearer.is_some(),
                    code = ?status.code(),
                    "admin API: refused a call: {}",
                    status.message()
                );
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests;
