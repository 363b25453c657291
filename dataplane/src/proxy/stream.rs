//! The byte stream under a proxied connection: plain TCP (monoio's owned-buffer "rent" I/O,
//! io_uring) or TLS (tokio-rustls over monoio's poll-io, adapted back to rent I/O), so the
//! HTTP/1.1 and TCP handlers run unchanged over either. HTTP/2 takes the poll-io stream itself
//! ([`Stream::into_poll`]).
//!
//! A TLS stream carries what the handshake established: the negotiated ALPN protocol and the
//! peer's SPIFFE ID (mutual TLS).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, IntoPollIo, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;
use monoio::net::tcp::stream_poll::TcpStreamPoll;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use shoal_ca::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::h2::io::Prefixed;

/// The poll-io stream TLS runs over (`Prefixed` replays bytes protocol sniffing already read).
pub type PollTcp = Prefixed<TcpStreamPoll>;
/// A TLS connection, either side.
pub type TlsIo = tokio_rustls::TlsStream<PollTcp>;

/// What a TLS handshake established.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The negotiated ALPN protocol (`h2`, `http/1.1`), if any.
    pub alpn: Option<Vec<u8>>,
    /// The peer's SPIFFE ID (mutual TLS).
    pub peer_id: Option<Arc<SpiffeId>>,
}

impl TlsInfo {
    fn of(conn: &rustls::CommonState) -> Self {
        Self {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            peer_id: conn
                .peer_certificates()
                .and_then(crate::tls::peer_spiffe_id)
                .map(Arc::new),
        }
    }
}

/// A TLS connection adapted to rent I/O.
pub struct TlsConn {
    io: TlsIo,
    fd: RawFd,
    pub info: TlsInfo,
}

/// See the module docs.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
}

impl Stream {
    pub fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Plain(s) => s.as_raw_fd(),
            Stream::Tls(t) => t.fd,
        }
    }

    pub fn tls_info(&self) -> Option<&TlsInfo> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(t) => Some(&t.info),
        }
    }

    /// The peer's SPIFFE ID, when mutual TLS established one.
    pub fn peer_id(&self) -> Option<&Arc<SpiffeId>> {
        self.tls_info().and_then(|i| i.peer_id.as_ref())
    }

    /// The stream as tokio-style poll I/O (for h2), with `prefix` read first (plain only).
    pub fn into_poll(self, prefix: Vec<u8>) -> io::Result<PollStream> {
        match self {
            Stream::Plain(s) => Ok(PollStream::Plain(Prefixed::new(prefix, s.into_poll_io()?))),
            Stream::Tls(t) => Ok(PollStream::Tls(Box::new(t.io))),
        }
    }

    /// Owned read and write halves that can be used concurrently (tunnels).
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Stream::Tls(t) => {
                let shared = Rc::new(RefCell::new(t.io));
                (ReadHalf::Tls(shared.clone()), WriteHalf::Tls(shared))
            }
        }
    }
}

/// Accepts TLS on `tcp` (`initial`: bytes already read from it) within `timeout`.
pub async fn accept(
    tcp: TcpStream,
    initial: Vec<u8>,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> io::Result<Stream> {
    let fd = tcp.as_raw_fd();
    let io = Prefixed::new(initial, tcp.into_poll_io()?);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tls = monoio::time::timeout(timeout, acceptor.accept(io))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let info = TlsInfo::of(tls.get_ref().1);
    Ok(Stream::Tls(Box::new(TlsConn {
        io: tokio_rustls::TlsStream::Server(tls),
        fd,
        info,
    })))
}

/// Originates TLS on `tcp` within `timeout`.
pub async fn connect(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    timeout: Duration,
) -> io::Result<Stream> {
    let fd = tcp.as_raw_fd();
    let io = Prefixed::new(Vec::new(), tcp.into_poll_io()?);
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = monoio::time::timeout(timeout, connector.connect(server_name, io))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let info = TlsInfo::of(tls.get_ref().1);
    Ok(Stream::Tls(Box::new(TlsConn {
        io: tokio_rustls::TlsStream::Client(tls),
        fd,
        info,
    })))
}

// === rent I/O over poll I/O ===

/// Reads once from a poll-io reader into an owned rent buffer.
async fn read_into<R: AsyncRead + Unpin, T: IoBufMut>(
    r: &mut R,
    mut buf: T,
) -> BufResult<usize, T> {
    let total = buf.bytes_total();
    let ptr = buf.write_ptr();
    // SAFETY: `IoBufMut` (an unsafe trait) guarantees `write_ptr` is valid for writes of
    // `bytes_total` bytes while we own `buf`, which we do until this function returns; the
    // slice is treated as uninitialised, and only the `n` bytes the reader filled are marked
    // initialised below.
    #[allow(unsafe_code)]
    let slice = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<MaybeUninit<u8>>(), total) };
    let mut rb = ReadBuf::uninit(slice);
    let res = poll_fn(|cx| Pin::new(&mut *r).poll_read(cx, &mut rb)).await;
    let n = rb.filled().len();
    match res {
        Ok(()) => {
            // SAFETY: the reader initialised the first `n` bytes (`ReadBuf::filled`).
            #[allow(unsafe_code)]
            unsafe {
                buf.set_init(n)
            };
            (Ok(n), buf)
        }
        Err(e) => (Err(e), buf),
    }
}

/// Writes once from an owned rent buffer to a poll-io writer.
async fn write_from<W: AsyncWrite + Unpin, T: IoBuf>(w: &mut W, buf: T) -> BufResult<usize, T> {
    // SAFETY: `IoBuf` (an unsafe trait) guarantees `read_ptr` is valid for reads of
    // `bytes_init` initialised bytes while we own `buf`.
    #[allow(unsafe_code)]
    let slice = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
    let res = poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, slice)).await;
    (res, buf)
}

fn no_vectored<T>(buf: T) -> BufResult<usize, T> {
    (
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "vectored I/O over TLS",
        )),
        buf,
    )
}

impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(t) => read_into(&mut t.io, buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.readv(buf).await,
            Stream::Tls(_) => no_vectored(buf),
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.write(buf).await,
            Stream::Tls(t) => write_from(&mut t.io, buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.writev(buf).await,
            Stream::Tls(_) => no_vectored(buf),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            Stream::Tls(t) => t.io.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            // close_notify, then FIN.
            Stream::Tls(t) => t.io.shutdown().await,
        }
    }
}

// === halves ===

/// The read half of [`Stream::into_split`].
pub enum ReadHalf {
    Plain(OwnedReadHalf<TcpStream>),
    Tls(Rc<RefCell<TlsIo>>),
}

/// The write half of [`Stream::into_split`].
pub enum WriteHalf {
    Plain(OwnedWriteHalf<TcpStream>),
    Tls(Rc<RefCell<TlsIo>>),
}

/// One half of a TLS stream as poll I/O. The `RefCell` is borrowed only inside a single
/// `poll_*` call (never across an await), and a worker is one thread, so the two halves never
/// borrow it at the same time.
struct Shared<'a>(&'a RefCell<TlsIo>);

impl AsyncRead for Shared<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Shared<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_shutdown(cx)
    }
}

impl AsyncReadRent for ReadHalf {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ReadHalf::Plain(s) => s.read(buf).await,
            ReadHalf::Tls(t) => read_into(&mut Shared(t), buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ReadHalf::Plain(s) => s.readv(buf).await,
            ReadHalf::Tls(_) => no_vectored(buf),
        }
    }
}

impl AsyncWriteRent for WriteHalf {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            WriteHalf::Plain(s) => s.write(buf).await,
            WriteHalf::Tls(t) => write_from(&mut Shared(t), buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            WriteHalf::Plain(s) => s.writev(buf).await,
            WriteHalf::Tls(_) => no_vectored(buf),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(s) => s.flush().await,
            WriteHalf::Tls(t) => Shared(t).flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(s) => s.shutdown().await,
            WriteHalf::Tls(t) => Shared(t).shutdown().await,
        }
    }
}

// === poll I/O for h2 ===

/// A connection as poll I/O, for h2.
pub enum PollStream {
    Plain(PollTcp),
    Tls(Box<TlsIo>),
}

impl AsyncRead for PollStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            PollStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PollStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PollStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            PollStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PollStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            PollStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            PollStream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PollStream::Plain(s) => s.is_write_vectored(),
            PollStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            PollStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PollStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            PollStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PollStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
