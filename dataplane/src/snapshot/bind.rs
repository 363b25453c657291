//! Binding listener sockets on the control side, so a bind failure rejects the whole change.
//!
//! One socket per worker, all with SO_REUSEPORT on the same address: the kernel spreads new
//! connections across workers and no accept is shared between cores. With port 0 the first socket
//! picks the port and the others join it.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `n` SO_REUSEPORT listening sockets on `addr` (non-blocking, backlog 1024).
pub fn bind_reuseport(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpListener>> {
    let mut out: Vec<TcpListener> = Vec::with_capacity(n);
    let mut target = addr;
    for _ in 0..n.max(1) {
        let socket = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if target.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&target.into())?;
        socket.listen(1024)?;
        let l: TcpListener = socket.into();
        if target.port() == 0 {
            target = l.local_addr()?;
        }
        out.push(l);
    }
    Ok(out)
}
