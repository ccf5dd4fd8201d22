//! Fault-injecting relays: loopback never loses, duplicates, reorders or truncates anything, so
//! code that only works on a perfect network looks correct there. A relay sits between a client
//! and a server on 127.0.0.1 (or ::1) and misbehaves on purpose, with a seed so that a failing
//! run can be replayed exactly.
//!
//! [`UdpRelay`]: the client sends to the relay's address; the relay forwards each datagram to
//! the server from its own socket and forwards the server's datagrams back to the most recent
//! client, applying [`Faults`] in each direction.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How a relay mistreats the datagrams going one way. The default forwards everything intact.
///
/// Probabilities are in `0.0..=1.0` and drawn from the relay's seeded generator, so the same
/// seed and the same traffic give the same faults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Drop the first N datagrams (then apply the probabilities): "the first request is lost".
    pub drop_first: u64,
    /// Probability that a datagram is dropped.
    pub drop: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back and delivered after the next one.
    pub reorder: f64,
    /// Delay before each datagram is forwarded (milliseconds granularity is plenty).
    pub delay: Duration,
    /// Cut every datagram to at most this many bytes.
    pub truncate_to: Option<usize>,
}

/// Counters of what a relay did, in datagrams, over both directions.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams received from either side.
    pub received: AtomicU64,
    /// Datagrams sent on (duplicates counted once per copy).
    pub forwarded: AtomicU64,
    /// Datagrams dropped on purpose.
    pub dropped: AtomicU64,
}

/// A UDP relay on loopback; stops and releases its sockets when dropped.
pub struct UdpRelay {
    addr: SocketAddr,
    stats: Arc<RelayStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// How often the relay threads look at the stop flag: 20 ms.
const TICK: Duration = Duration::from_millis(20);

impl UdpRelay {
    /// Starts a relay in front of `server` (a loopback address), applying `to_server` to
    /// client→server datagrams and `to_client` to server→client datagrams, with generator `seed`.
    ///
    /// # Errors
    /// `io::ErrorKind::InvalidInput` when `server` is not a loopback address; any error binding
    /// the relay's two sockets on the same loopback family.
    pub fn start(server: SocketAddr, to_server: Faults, to_client: Faults, seed: u64) -> io::Result<Self> {
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
        let front = UdpSocket::bind((loopback, 0))?;
        let back = UdpSocket::bind((loopback, 0))?;
        for s in [&front, &back] {
            s.set_read_timeout(Some(TICK))?;
        }
        let addr = front.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();

        let upstream = {
            let (front, back) = (front.try_clone()?, back.try_clone()?);
            let (client, stats, stop) = (Arc::clone(&client), Arc::clone(&stats), Arc::clone(&stop));
            let mut pipe = Pipe::new(to_server, seed, stats);
            thread::spawn(move || {
                pipe.run(&front, &stop, |from| {
                    if let Ok(mut c) = client.lock() {
                        *c = Some(from);
                    }
                    Some((&back, server))
                });
            })
        };
        let downstream = {
            let (client, stats, stop) = (Arc::clone(&client), Arc::clone(&stats), Arc::clone(&stop));
            let mut pipe = Pipe::new(to_client, seed.wrapping_add(1), stats);
            thread::spawn(move || {
                pipe.run(&back, &stop, |from| {
                    let to = client.lock().ok().and_then(|c| *c)?;
                    (from == server).then_some((&front, to))
                });
            })
        };
        Ok(UdpRelay {
            addr,
            stats,
            stop,
            threads: vec![upstream, downstream],
        })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the relay has done so far.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One direction of a relay: receive, apply faults, send on.
struct Pipe {
    faults: Faults,
    rng: fastrand::Rng,
    stats: Arc<RelayStats>,
    seen: u64,
    held: Option<(Vec<u8>, SocketAddr)>,
}

impl Pipe {
    fn new(faults: Faults, seed: u64, stats: Arc<RelayStats>) -> Self {
        Pipe {
            faults,
            rng: fastrand::Rng::with_seed(seed),
            stats,
            seen: 0,
            held: None,
        }
    }

    /// Forwards datagrams arriving on `input` until `stop` is set; `route` says, for a sender,
    /// which socket to send from and to whom (`None`: discard).
    fn run<'a>(
        &mut self,
        input: &UdpSocket,
        stop: &AtomicBool,
        mut route: impl FnMut(SocketAddr) -> Option<(&'a UdpSocket, SocketAddr)>,
    ) {
        let mut buf = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            let (n, from) = match input.recv_from(&mut buf) {
                Ok(x) => x,
                Err(_) => continue, // tick timeout, or an ICMP error report: keep relaying
            };
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            let Some((output, to)) = route(from) else { continue };
            self.seen += 1;
            let f = &self.faults;
            if self.seen <= f.drop_first || (f.drop > 0.0 && self.rng.f64() < f.drop) {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let len = f.truncate_to.map_or(n, |cap| cap.min(n));
            let datagram = buf[..len].to_vec();
            if !f.delay.is_zero() {
                thread::sleep(f.delay);
            }
            let copies = if f.duplicate > 0.0 && self.rng.f64() < f.duplicate {
                2
            } else {
                1
            };
            if self.held.is_none() && f.reorder > 0.0 && self.rng.f64() < f.reorder {
                self.held = Some((datagram, to));
                continue;
            }
            for _ in 0..copies {
                self.send(output, &datagram, to);
            }
            if let Some((late, late_to)) = self.held.take() {
                self.send(output, &late, late_to);
            }
        }
    }

    fn send(&self, output: &UdpSocket, datagram: &[u8], to: SocketAddr) {
        if output.send_to(datagram, to).is_ok() {
            self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::udp_socket;

    fn echo_once(server: &UdpSocket) {
        let mut buf = [0u8; 2048];
        let (n, from) = server.recv_from(&mut buf).expect("echo server receives");
        server.send_to(&buf[..n], from).expect("echo server replies");
    }

    #[test]
    fn forwards_both_ways_and_drops_the_first() {
        let server = udp_socket();
        let faults = Faults {
            drop_first: 1,
            ..Faults::default()
        };
        let relay = UdpRelay::start(server.local_addr().expect("addr"), faults, Faults::default(), 7)
            .expect("relay starts");
        let client = udp_socket();
        client.send_to(b"lost", relay.addr()).expect("send");
        client.send_to(b"kept", relay.addr()).expect("send");
        echo_once(&server);
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).expect("reply through relay");
        assert_eq!((&buf[..n], from), (&b"kept"[..], relay.addr()));
        assert_eq!(relay.stats().dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn truncates_and_duplicates() {
        let server = udp_socket();
        let faults = Faults {
            truncate_to: Some(3),
            duplicate: 1.0,
            ..Faults::default()
        };
        let relay = UdpRelay::start(server.local_addr().expect("addr"), faults, Faults::default(), 1)
            .expect("relay starts");
        udp_socket().send_to(b"abcdef", relay.addr()).expect("send");
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            let (n, _) = server.recv_from(&mut buf).expect("a copy arrives");
            assert_eq!(&buf[..n], b"abc");
        }
    }

    #[test]
    fn refuses_non_loopback_servers() {
        let err = UdpRelay::start(
            "192.0.2.1:9".parse().expect("addr"),
            Faults::default(),
            Faults::default(),
            0,
        )
        .err()
        .expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
