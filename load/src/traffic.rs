//! Data on held connections: whatever arrives is read and discarded and
//! counted. A visit to a connection moves a bounded number of bytes, so one
//! busy connection never holds up the connects, the accepts or a stop signal.

use crate::shm::Slot;
use crate::sys::{self, Drained, Epoll};
use std::os::fd::RawFd;

/// Size of the read buffer: one read takes what a 64 KiB write brought.
pub const CHUNK: usize = 64 * 1024;
/// Bytes read from one connection per visit.
const BUDGET: u64 = 4 * CHUNK as u64;

/// Registered level-triggered (see `Token::events`).
const LEVEL: u64 = 1 << 34;

/// The epoll data of an established connection: its fd in the low 32 bits,
/// how it is registered above them (bit 32 is the server's listener mark).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token(pub u64);

impl Token {
    /// A held connection, edge-triggered: one that sends nothing is never
    /// reported until its FIN or RST, and never needs an epoll_ctl MOD.
    pub fn held(fd: RawFd) -> Token {
        Token(u64::from(fd as u32))
    }

    pub fn fd(self) -> RawFd {
        self.0 as u32 as RawFd
    }

    fn is_level(self) -> bool {
        self.0 & LEVEL != 0
    }

    /// The events the connection is registered for.
    pub fn events(self) -> u32 {
        let mut e = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        if !self.is_level() {
            e |= libc::EPOLLET as u32;
        }
        e
    }
}

/// What a worker serves its connections with: one read buffer for all.
pub struct Io {
    scratch: Vec<u8>,
    budget: u64,
}

impl Io {
    pub fn new() -> Io {
        Io::sized(CHUNK, BUDGET)
    }

    fn sized(chunk: usize, budget: u64) -> Io {
        Io {
            scratch: vec![0; chunk],
            budget,
        }
    }

    /// Serves one epoll report of an established connection: reads and
    /// discards what arrived. Returns false once the peer has ended the
    /// connection (closed and counted), true while it is open.
    pub fn serve(&mut self, ep: &Epoll, tok: Token, events: u32, slot: &Slot) -> bool {
        let fd = tok.fd();
        let readable = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if events & readable == 0 {
            return true;
        }
        let (n, end) = sys::drain(fd, &mut self.scratch, self.budget);
        if n > 0 {
            Slot::add(&slot.rx_bytes, n);
        }
        match end {
            Drained::Open => true,
            // More is waiting. Edge-triggered, no new edge would come while
            // the peer waits for the window we did not open, so from now on
            // this connection is reported for as long as data is waiting.
            Drained::Busy => {
                if !tok.is_level() {
                    let lt = Token(tok.0 | LEVEL);
                    if let Err(e) = ep.modify(fd, lt.events(), lt.0) {
                        slot.error(e.raw_os_error().unwrap_or(0));
                    }
                }
                true
            }
            Drained::Eof => close(slot, fd, None),
            Drained::Error(e) => close(slot, fd, Some(e)),
        }
    }
}

fn close(slot: &Slot, fd: RawFd, err: Option<i32>) -> bool {
    sys::close(fd);
    slot.peer_closed(err);
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::Shared;
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::Ordering::Relaxed;

    /// The reports epoll has for us right now.
    fn reports(ep: &Epoll) -> Vec<(Token, u32)> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let n = ep.wait(&mut evs, 0).unwrap();
        evs[..n].iter().map(|e| (Token(e.u64), e.events)).collect()
    }

    #[test]
    fn a_busy_connection_is_read_in_bites_then_reported_while_data_waits() {
        let (mut peer, conn) = UnixStream::pair().unwrap();
        conn.set_nonblocking(true).unwrap();
        let fd = conn.into_raw_fd();
        let sh = Shared::new(1).unwrap();
        let slot = sh.slot(0);
        let ep = Epoll::new().unwrap();
        let held = Token::held(fd);
        ep.add(fd, held.events(), held.0).unwrap();
        let mut io = Io::sized(1024, 4096);
        assert!(
            reports(&ep).is_empty(),
            "an idle connection is never reported"
        );

        peer.write_all(&[7; 10_000]).unwrap();
        let got = reports(&ep);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, held);
        assert!(io.serve(&ep, got[0].0, got[0].1, slot));
        assert_eq!(slot.rx_bytes.load(Relaxed), 4096);
        // Switched to level-triggered: reported with nothing new arriving,
        // and after the next bite still, until the data is gone.
        let got = reports(&ep);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, Token(held.0 | LEVEL));
        assert!(io.serve(&ep, got[0].0, got[0].1, slot));
        assert_eq!(slot.rx_bytes.load(Relaxed), 8192);
        let got = reports(&ep);
        assert_eq!(got.len(), 1);
        assert!(io.serve(&ep, got[0].0, got[0].1, slot));
        assert_eq!(slot.rx_bytes.load(Relaxed), 10_000);
        assert!(reports(&ep).is_empty(), "drained: not reported");

        drop(peer);
        let got = reports(&ep);
        assert_eq!(got.len(), 1);
        assert!(!io.serve(&ep, got[0].0, got[0].1, slot), "EOF closes");
        let t = sh.sum();
        assert_eq!((t.closed, t.resets, t.failed()), (1, 0, 0));
    }

    #[test]
    fn tokens_keep_the_fd_and_say_how_it_is_registered() {
        let (et, inn, rdhup) = (libc::EPOLLET, libc::EPOLLIN, libc::EPOLLRDHUP);
        let t = Token::held(7);
        assert_eq!((t.0, t.fd()), (7, 7));
        assert_eq!(t.events(), (inn | rdhup | et) as u32);
        let lt = Token(t.0 | LEVEL);
        assert_eq!(lt.fd(), 7);
        assert_eq!(lt.events(), (inn | rdhup) as u32);
        // Never the server's listener mark.
        assert_eq!(Token::held(i32::MAX).0 & (1 << 32), 0);
    }
}
