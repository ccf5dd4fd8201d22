//! TCP fault injection: a relay that reshapes a byte stream without changing its bytes.
//!
//! On loopback a small `write` nearly always arrives as one `read`, so code that assumes "one
//! read is one message" looks correct there. A [`TcpRelay`] sits between a client and a server
//! on 127.0.0.1 (or ::1): the client connects to the relay, the relay connects to the server, and
//! each direction of the stream is forwarded with a [`Shaping`]:
//!
//! - [`Shaping::Slice`] cuts the stream into pieces of 1 to 3 bytes, written separately with a
//!   pause between them (and Nagle's algorithm off), so the receiver really sees many short
//!   reads; piece sizes come from a seeded generator, so a failing run can be replayed;
//! - [`Shaping::Coalesce`] gathers what arrives within a time window and writes it at once, so
//!   two messages sent by two writes arrive in one read.
//!
//! The stream's bytes and order are never changed, and an orderly close (EOF) in one direction
//! is passed on as a half-close (`shutdown(Write)`) to the other side. A reset or error on one
//! side closes both directions towards the other side (as an orderly close, not a reset).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How one direction of a [`TcpRelay`] reshapes the stream. The bytes never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shaping {
    /// Forward each read as one write.
    #[default]
    Intact,
    /// Write the stream in pieces of 1 to 3 bytes (sizes from the seeded generator), sleeping
    /// `pause` after each piece so that the pieces arrive separately.
    Slice {
        /// Pause after each piece; 1 ms is plenty on loopback.
        pause: Duration,
    },
    /// After the first byte arrives, keep reading for `window`, then write everything at once.
    Coalesce {
        /// How long to gather bytes before writing them on.
        window: Duration,
    },
}

impl Shaping {
    /// Pieces of 1 to 3 bytes with a 1 ms pause after each.
    pub const SLICE: Shaping = Shaping::Slice {
        pause: Duration::from_millis(1),
    };
}

/// Counters of what a relay did, over all connections and both directions.
#[derive(Debug, Default)]
pub struct TcpRelayStats {
    /// Connections accepted from clients.
    pub connections: AtomicU64,
    /// Bytes forwarded.
    pub bytes: AtomicU64,
    /// `write` calls made to forward them (pieces, for [`Shaping::Slice`]).
    pub writes: AtomicU64,
    /// The largest single write, in bytes.
    pub largest_write: AtomicU64,
}

/// A TCP relay on loopback; stops, and closes every connection through it, when dropped.
pub struct TcpRelay {
    addr: SocketAddr,
    stats: Arc<TcpRelayStats>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    pumps: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// How often relay threads look at the stop flag: 20 ms.
const TICK: Duration = Duration::from_millis(20);

/// How long the relay waits to connect to the server, and for a write to proceed: 5000 ms.
const PATIENCE: Duration = Duration::from_secs(5);

/// Generates the sizes of [`Shaping::Slice`] pieces: 1 to 3 bytes each, from a seeded
/// generator, so the same seed cuts the same stream the same way.
#[derive(Debug, Clone)]
pub struct Slicer {
    rng: fastrand::Rng,
}

impl Slicer {
    /// A slicer whose pieces are drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Slicer {
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The size of the next piece of a stream with `left` bytes to go (`left > 0`): 1 to 3, at
    /// most `left`.
    pub fn next_piece(&mut self, left: usize) -> usize {
        self.rng.usize(1..=3).min(left)
    }
}

impl TcpRelay {
    /// Starts a relay in front of `server` (a loopback address), shaping client→server bytes
    /// with `to_server` and server→client bytes with `to_client`; `seed` drives the slicing.
    /// It accepts any number of clients, each with its own connection to the server.
    ///
    /// # Errors
    /// `io::ErrorKind::InvalidInput` when `server` is not a loopback address; any error creating
    /// the relay's listening socket on the same loopback family.
    pub fn start(server: SocketAddr, to_server: Shaping, to_client: Shaping, seed: u64) -> io::Result<Self> {
        if !server.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("relays stay on loopback; {server} is not a loopback address"),
            ));
        }
        let loopback: IpAddr = match server {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        let listener = TcpListener::bind((loopback, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(TcpRelayStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let pumps: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = {
            let (stats, stop, pumps) = (Arc::clone(&stats), Arc::clone(&stop), Arc::clone(&pumps));
            thread::spawn(move || {
                let mut next_seed = seed;
                while !stop.load(Ordering::Relaxed) {
                    let client = match listener.accept() {
                        Ok((client, _)) => client,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(TICK);
                            continue;
                        }
                        Err(_) => continue,
                    };
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    // A failed connection to the server closes the client's connection.
                    let Ok(upstream) = TcpStream::connect_timeout(&server, PATIENCE) else {
                        continue;
                    };
                    let handles = [(to_server, true), (to_client, false)].map(|(shaping, up)| {
                        let (from, to) = if up {
                            (client.try_clone(), upstream.try_clone())
                        } else {
                            (upstream.try_clone(), client.try_clone())
                        };
                        let pipe = Pipe {
                            shaping,
                            slicer: Slicer::new(next_seed),
                            stats: Arc::clone(&stats),
                        };
                        next_seed = next_seed.wrapping_add(1);
                        let stop = Arc::clone(&stop);
                        thread::spawn(move || {
                            if let (Ok(from), Ok(to)) = (from, to) {
                                pipe.run(&from, &to, &stop);
                            }
                        })
                    });
                    if let Ok(mut all) = pumps.lock() {
                        all.extend(handles);
                    }
                }
            })
        };
        Ok(TcpRelay {
            addr,
            stats,
            stop,
            acceptor: Some(acceptor),
            pumps,
        })
    }

    /// A relay that slices both directions into 1-3 byte pieces (1 ms apart), with `seed`.
    ///
    /// # Errors
    /// As [`TcpRelay::start`].
    pub fn slicing(server: SocketAddr, seed: u64) -> io::Result<Self> {
        TcpRelay::start(server, Shaping::SLICE, Shaping::SLICE, seed)
    }

    /// A relay that coalesces what arrives within `window`, in both directions.
    ///
    /// # Errors
    /// As [`TcpRelay::start`].
    pub fn coalescing(server: SocketAddr, window: Duration) -> io::Result<Self> {
        let shaping = Shaping::Coalesce { window };
        TcpRelay::start(server, shaping, shaping, 0)
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the relay has done so far.
    pub fn stats(&self) -> &TcpRelayStats {
        &self.stats
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let pumps = self
            .pumps
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for pump in pumps {
            let _ = pump.join();
        }
    }
}

/// One direction of one relayed connection.
struct Pipe {
    shaping: Shaping,
    slicer: Slicer,
    stats: Arc<TcpRelayStats>,
}

impl Pipe {
    /// Forwards `from` to `to` until EOF, an error, or `stop`; then passes the end on.
    fn run(mut self, from: &TcpStream, to: &TcpStream, stop: &AtomicBool) {
        let ready = from
            .set_read_timeout(Some(TICK))
            .and_then(|()| to.set_write_timeout(Some(PATIENCE)))
            .and_then(|()| to.set_nodelay(true));
        if ready.is_err() {
            return;
        }
        let mut buf = vec![0u8; 16 * 1024];
        let mut reader = from;
        let ended_cleanly = loop {
            if stop.load(Ordering::Relaxed) {
                break false;
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break false,
            };
            let mut data = buf[..n].to_vec();
            let mut eof = false;
            if let Shaping::Coalesce { window } = self.shaping {
                eof = gather(from, &mut data, window);
            }
            if self.forward(to, &data, stop).is_err() {
                break false;
            }
            if eof {
                break true;
            }
        };
        if ended_cleanly {
            // Orderly release: pass the EOF on, and keep the other direction open.
            let _ = to.shutdown(Shutdown::Write);
        } else {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        }
    }

    fn forward(&mut self, to: &TcpStream, data: &[u8], stop: &AtomicBool) -> io::Result<()> {
        match self.shaping {
            Shaping::Slice { pause } => {
                let mut rest = data;
                while !rest.is_empty() {
                    if stop.load(Ordering::Relaxed) {
                        return Err(io::Error::other("relay stopped"));
                    }
                    let k = self.slicer.next_piece(rest.len());
                    self.write(to, &rest[..k])?;
                    rest = &rest[k..];
                    thread::sleep(pause);
                }
                Ok(())
            }
            Shaping::Intact | Shaping::Coalesce { .. } => self.write(to, data),
        }
    }

    fn write(&self, mut to: &TcpStream, piece: &[u8]) -> io::Result<()> {
        to.write_all(piece)?;
        let len = piece.len() as u64;
        self.stats.bytes.fetch_add(len, Ordering::Relaxed);
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.largest_write.fetch_max(len, Ordering::Relaxed);
        Ok(())
    }
}

/// Reads more of `from` into `data` until `window` has passed; returns whether EOF came.
fn gather(mut from: &TcpStream, data: &mut Vec<u8>, window: Duration) -> bool {
    let deadline = Instant::now() + window;
    let mut buf = [0u8; 16 * 1024];
    let mut eof = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || from.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break, // the window passed (or an error, which the next read reports)
        }
    }
    let _ = from.set_read_timeout(Some(TICK));
    eof
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{tcp_connect, tcp_listener};

    fn accept(listener: &TcpListener) -> TcpStream {
        let (stream, _) = listener.accept().expect("the relay connects to the server");
        crate::testing::set_stream_timeouts(&stream);
        stream
    }

    #[test]
    fn slicer_is_seeded_and_cuts_1_to_3_bytes() {
        let cut = |seed| {
            let mut slicer = Slicer::new(seed);
            let mut left = 100;
            let mut pieces = Vec::new();
            while left > 0 {
                let k = slicer.next_piece(left);
                pieces.push(k);
                left -= k;
            }
            pieces
        };
        let a = cut(7);
        assert_eq!(a, cut(7), "the same seed must cut the same way");
        assert!(a.iter().all(|k| (1..=3).contains(k)), "{a:?}");
        assert_eq!(a.iter().sum::<usize>(), 100);
        assert!(a.iter().any(|&k| k > 1), "not all pieces are 1 byte: {a:?}");
    }

    #[test]
    fn slices_a_message_and_keeps_its_bytes() {
        let server = tcp_listener();
        let relay = TcpRelay::slicing(server.local_addr().expect("addr"), 3).expect("relay starts");
        let mut client = tcp_connect(relay.addr());
        let message = b"the quick brown fox jumps over the lazy dog";
        client.write_all(message).expect("send");
        client.shutdown(Shutdown::Write).expect("half-close");
        let mut upstream = accept(&server);
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).expect("the stream, then EOF");
        assert_eq!(got, message);
        let stats = relay.stats();
        assert!(stats.largest_write.load(Ordering::Relaxed) <= 3);
        assert!(stats.writes.load(Ordering::Relaxed) >= (message.len() / 3) as u64);
        // The other direction is still open after the client's half-close.
        upstream.write_all(b"ok").expect("reply");
        drop(upstream);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).expect("reply, then EOF");
        assert_eq!(reply, b"ok");
    }

    #[test]
    fn coalesces_two_writes_into_one() {
        let server = tcp_listener();
        let relay = TcpRelay::start(
            server.local_addr().expect("addr"),
            Shaping::Coalesce {
                window: Duration::from_millis(500),
            },
            Shaping::Intact,
            0,
        )
        .expect("relay starts");
        let mut client = tcp_connect(relay.addr());
        client.set_nodelay(true).expect("nodelay");
        client.write_all(b"one\n").expect("first write");
        thread::sleep(Duration::from_millis(10));
        client.write_all(b"two\n").expect("second write");
        let mut upstream = accept(&server);
        let mut buf = [0u8; 64];
        let n = upstream.read(&mut buf).expect("read");
        assert_eq!(&buf[..n], b"one\ntwo\n", "both writes arrive in one read");
        // The relay counts a write after it returns, which may be after our read: wait for it.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while relay.stats().writes.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            relay.stats().writes.load(Ordering::Relaxed),
            1,
            "one write upstream"
        );
    }

    #[test]
    fn refuses_non_loopback_servers() {
        let err = TcpRelay::slicing("192.0.2.1:9".parse().expect("addr"), 0)
            .err()
            .expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
