//! The few raw system calls the data plane needs that monoio does not expose.

use std::os::fd::RawFd;

/// Shuts down both directions of a socket, waking any read pending on it (with EOF). Used by
/// idle watchdogs to end a stuck tunnel without cancelling in-flight io_uring reads.
pub fn shutdown_both(fd: RawFd) {
    // SAFETY: shutdown(2) only takes an integer descriptor and never touches memory. The caller
    // holds the stream that owns `fd` for the duration of the call, so it is not a reused number.
    #[allow(unsafe_code)]
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}
