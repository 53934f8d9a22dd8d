//! Data on held connections: whatever arrives is read and discarded and
//! counted, and the few bulk connections (`--bulk-in` on the client,
//! `--bulk-out` on the server) are written to for as long as they are open.
//! A visit to a connection moves a bounded number of bytes each way, so one
//! busy connection never holds up the connects, the accepts or a stop signal.

use crate::shm::{Ramp, Slot};
use crate::sys::{self, Drained, Epoll, Sent};
use std::os::fd::RawFd;

/// Bytes per bulk write, and the size of the read buffer. Large writes let
/// the kernel build TSO/GSO packets far larger than one receive buffer of
/// the peer's NIC, which is what the bulk traffic is for.
pub const CHUNK: usize = 64 * 1024;
/// Bytes read from, and written to, one connection per visit.
const BUDGET: u64 = 4 * CHUNK as u64;
/// What the bulk writes carry, repeated: recognisable in a packet capture.
const PATTERN: &[u8; 16] = b"storm-load bulk\n";

/// Written to whenever there is room (see `Token::events`).
const BULK: u64 = 1 << 33;
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

    /// A bulk connection, level-triggered: reported (and written to)
    /// whenever its send buffer has room, with no bookkeeping of our own.
    pub fn bulk(fd: RawFd) -> Token {
        Token(Token::held(fd).0 | BULK | LEVEL)
    }

    pub fn fd(self) -> RawFd {
        self.0 as u32 as RawFd
    }

    fn is_bulk(self) -> bool {
        self.0 & BULK != 0
    }

    fn is_level(self) -> bool {
        self.0 & LEVEL != 0
    }

    /// The events the connection is registered for.
    pub fn events(self) -> u32 {
        let mut e = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        if self.is_bulk() {
            e |= libc::EPOLLOUT as u32;
        }
        if !self.is_level() {
            e |= libc::EPOLLET as u32;
        }
        e
    }
}

/// `len` bytes of the bulk pattern.
fn pattern(len: usize) -> Vec<u8> {
    PATTERN.iter().copied().cycle().take(len).collect()
}

/// Picks the bulk connections: the first `n` to come up over all workers,
/// counted in the shared mapping. Once they are all picked a worker stops
/// asking, so the rest of the storm never touches the shared counter.
pub struct Picker<'a> {
    ramp: &'a Ramp,
    n: u64,
    open: bool,
}

impl<'a> Picker<'a> {
    pub fn new(ramp: &'a Ramp, n: u64) -> Picker<'a> {
        Picker {
            ramp,
            n,
            open: n > 0,
        }
    }

    /// Whether the connection that just came up is a bulk one.
    pub fn take(&mut self) -> bool {
        self.open = self.open && self.ramp.take_bulk(self.n);
        self.open
    }
}

/// What a worker serves its connections with: one read buffer for all, and
/// the bulk data (empty if this role writes none).
pub struct Io {
    scratch: Vec<u8>,
    data: Vec<u8>,
    budget: u64,
}

impl Io {
    pub fn new(bulk: bool) -> Io {
        Io::sized(CHUNK, BUDGET, bulk)
    }

    fn sized(chunk: usize, budget: u64, bulk: bool) -> Io {
        Io {
            scratch: vec![0; chunk],
            data: if bulk { pattern(chunk) } else { Vec::new() },
            budget,
        }
    }

    /// Serves one epoll report of an established connection: reads and
    /// discards what arrived, then, on a bulk connection with room, writes.
    /// Returns false once the connection has ended (closed and counted like
    /// any other the peer ended), true while it is open.
    pub fn serve(&mut self, ep: &Epoll, tok: Token, events: u32, slot: &Slot) -> bool {
        let fd = tok.fd();
        let readable = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if events & readable != 0 && !self.read(ep, tok, slot) {
            return false;
        }
        if !tok.is_bulk() || events & libc::EPOLLOUT as u32 == 0 {
            return true;
        }
        let (n, end) = sys::send_some(fd, &self.data, self.budget);
        if n > 0 {
            Slot::add(&slot.tx_bytes, n);
        }
        match end {
            Sent::Blocked | Sent::Busy => true,
            // Already shut down for writing, its RST reported before: ended
            // by the peer, not a failure.
            Sent::Error(libc::EPIPE) => close(slot, fd, None),
            Sent::Error(e) => close(slot, fd, Some(e)),
        }
    }

    fn read(&mut self, ep: &Epoll, tok: Token, slot: &Slot) -> bool {
        let fd = tok.fd();
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
    use std::io::{Read, Write};
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
        let mut io = Io::sized(1024, 4096, false);
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
        let b = Token::bulk(9);
        assert_eq!(b.fd(), 9);
        assert_eq!(b.events(), (inn | rdhup | libc::EPOLLOUT) as u32);
        // Never the server's listener mark.
        assert_eq!(Token::held(i32::MAX).0 & (1 << 32), 0);
        assert_eq!(Token::bulk(i32::MAX).0 & (1 << 32), 0);
    }

    #[test]
    fn the_pattern_is_a_whole_number_of_marks() {
        let p = pattern(CHUNK);
        assert_eq!(p.len(), 65536);
        assert_eq!(&p[..16], b"storm-load bulk\n");
        assert!(p.chunks(16).all(|c| c == PATTERN));
        assert_eq!(pattern(20), b"storm-load bulk\nstor");
    }

    #[test]
    fn a_bulk_connection_is_written_in_bites_while_it_has_room() {
        let (mut peer, conn) = UnixStream::pair().unwrap();
        conn.set_nonblocking(true).unwrap();
        let fd = conn.into_raw_fd();
        let sh = Shared::new(1).unwrap();
        let slot = sh.slot(0);
        let ep = Epoll::new().unwrap();
        let tok = Token::bulk(fd);
        ep.add(fd, tok.events(), tok.0).unwrap();
        let mut io = Io::sized(1000, 4000, true);

        // Reported at once (it has room), and again after each bite.
        for visit in 1..=3 {
            let got = reports(&ep);
            assert_eq!(got, [(tok, libc::EPOLLOUT as u32)], "visit {visit}");
            assert!(io.serve(&ep, tok, got[0].1, slot));
            assert_eq!(slot.tx_bytes.load(Relaxed), visit * 4000);
        }
        let mut buf = vec![0; 12_000];
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..1000], &pattern(1000)[..]);
        assert_eq!(&buf[11_000..], &pattern(1000)[..]);

        // Once the socket buffer is full it is not reported until the peer reads.
        let mut full = false;
        for _ in 0..10_000 {
            match reports(&ep).first() {
                Some(&(t, evs)) => assert!(io.serve(&ep, t, evs, slot)),
                None => {
                    full = true;
                    break;
                }
            }
        }
        assert!(full, "never filled the socket buffer");
        assert_eq!(slot.rx_bytes.load(Relaxed), 0);

        // The peer goes away with our data unread, so (as with TCP) that is
        // a reset: closed and counted once, and not a failure.
        drop(peer);
        let got = reports(&ep);
        assert_eq!(got.len(), 1);
        assert!(!io.serve(&ep, got[0].0, got[0].1, slot));
        let t = sh.sum();
        assert_eq!((t.closed, t.resets, t.failed()), (1, 1, 0));
    }
}
