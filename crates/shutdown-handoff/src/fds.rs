//! Taking ownership of the descriptors passed in `LISTEN_FDS`: the crate's only
//! `unsafe`, because nothing owns a descriptor a process inherits until it says so.
//!
//! Before a descriptor is claimed it is checked: open, a socket, a stream socket, and
//! listening (or, for the ready descriptor, a pipe). A stale `LISTEN_FDS` that named
//! descriptors this process opened itself (its runtime's, its log file) is refused
//! rather than taken. Claiming happens once per process (see [`take`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{SockType, getsockopt, sockopt};
use nix::sys::stat::{SFlag, fstat};

use crate::env::FIRST_FD;
use crate::error::HandoffError;

/// Set by the first [`take`]: the descriptors are then owned and must never be claimed
/// again.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// What a process was passed.
#[derive(Debug)]
pub(crate) struct Passed {
    /// The listening sockets, from descriptor 3 on.
    pub(crate) sockets: Vec<OwnedFd>,
    /// The pipe to report readiness on (a successor only).
    pub(crate) ready: Option<OwnedFd>,
}

/// Takes ownership of descriptors `3 .. 3 + count` (listening stream sockets) and of
/// `ready_fd` (a pipe), marking each close-on-exec. Checks every one before it claims
/// any. Runs once per process: a second call is [`HandoffError::AlreadyTaken`].
pub(crate) fn take(count: i32, ready_fd: Option<RawFd>) -> Result<Passed, HandoffError> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Err(HandoffError::AlreadyTaken);
    }
    let sockets: Vec<RawFd> = (FIRST_FD..FIRST_FD.saturating_add(count)).collect();
    for &fd in &sockets {
        check(fd, Kind::ListeningSocket)
            .map_err(|source| HandoffError::Inherited { fd, source })?;
    }
    if let Some(fd) = ready_fd {
        check(fd, Kind::Pipe).map_err(|source| HandoffError::Inherited { fd, source })?;
    }
    let claim = |fd: RawFd| -> Result<OwnedFd, HandoffError> {
        // SAFETY: `check` found `fd` open. Nothing else in this process owns it: it was
        // open when the process started (the variables that name it are checked to be
        // meant for this process), and `TAKEN` makes this the only claim of it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|errno| {
            HandoffError::Inherited {
                fd,
                source: errno.into(),
            }
        })?;
        Ok(owned)
    };
    Ok(Passed {
        sockets: sockets.into_iter().map(claim).collect::<Result<_, _>>()?,
        ready: ready_fd.map(claim).transpose()?,
    })
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    ListeningSocket,
    Pipe,
}

fn check(fd: RawFd, kind: Kind) -> io::Result<()> {
    // SAFETY: F_GETFD only reads the descriptor's flags; on a descriptor that is not
    // open it fails with EBADF and has no effect.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } == -1 {
        return Err(io::Error::other("it is not open"));
    }
    // SAFETY: open (just checked), and it stays open while borrowed: nothing in this
    // process owns it yet, so nothing closes it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let mode = SFlag::from_bits_truncate(fstat(borrowed)?.st_mode) & SFlag::S_IFMT;
    match kind {
        Kind::Pipe if mode == SFlag::S_IFIFO => Ok(()),
        Kind::Pipe => Err(io::Error::other("it is not a pipe")),
        Kind::ListeningSocket => {
            if mode != SFlag::S_IFSOCK {
                return Err(io::Error::other("it is not a socket"));
            }
            if getsockopt(&borrowed.as_fd(), sockopt::SockType)? != SockType::Stream {
                return Err(io::Error::other("it is not a stream socket"));
            }
            if !getsockopt(&borrowed.as_fd(), sockopt::AcceptConn)? {
                return Err(io::Error::other("it is not listening"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_that_are_not_listening_sockets_are_refused() {
        let file = std::fs::File::open("Cargo.toml").expect("open");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let err = check(fd, Kind::ListeningSocket).expect_err("a file");
        assert_eq!(err.to_string(), "it is not a socket");

        let connected = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&connected);
        let err = check(fd, Kind::ListeningSocket).expect_err("udp");
        assert_eq!(err.to_string(), "it is not a stream socket");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        check(fd, Kind::ListeningSocket).expect("a listening socket");
        let stream =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let err = check(fd, Kind::ListeningSocket).expect_err("connected");
        assert_eq!(err.to_string(), "it is not listening");

        let err = check(100_000, Kind::ListeningSocket).expect_err("closed");
        assert_eq!(err.to_string(), "it is not open");
        let err = check(fd, Kind::Pipe).expect_err("not a pipe");
        assert_eq!(err.to_string(), "it is not a pipe");
    }
}
