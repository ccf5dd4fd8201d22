//! Interoperability with a multicast member no one here wrote: Python's standard `socket`
//! module, joined on 127.0.0.1 beside the reference peer. Skipped, with a notice, where python3
//! is missing.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::testing::{notice, python3_available};

const BIN: &str = env!("CARGO_BIN_EXE_solution04-multicast");

/// A Python member: joins GROUP on 127.0.0.1 (ephemeral port, address and port reuse, only its
/// own groups on Linux), prints our ready line, sends its message once a line arrives on stdin
/// (out of 127.0.0.1 with TTL 0), prints the next two datagrams and leaves.
const PY_MEMBER: &str = r#"
import socket, struct, sys
group = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if hasattr(socket, "SO_REUSEPORT"):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
if sys.platform.startswith("linux"):
    s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MULTICAST_ALL", 49), 0)
s.bind(("", 0))
mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
s.settimeout(10.0)
print("joined %s on 127.0.0.1 port %d" % (group, s.getsockname()[1]), flush=True)
sys.stdin.readline()
s.sendto(b"from python", (group, s.getsockname()[1]))
for _ in range(2):
    data, sender = s.recvfrom(2048)
    print("Received: " + data.decode(), flush=True)
s.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)
"#;

/// A child process, killed and reaped when dropped, whose stdout lines arrive on a channel.
struct Guard {
    child: Child,
    lines: Receiver<String>,
}

impl Guard {
    fn start(program: &str, args: &[&str]) -> Guard {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let out: ChildStdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Guard { child, lines }
    }

    fn line(&self, what: &str) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no {what} within 10 s: {e}"))
    }

    /// Waits up to 15 s for the exit status, then returns the remaining stdout lines.
    fn finish(mut self) -> (bool, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => break status,
                None if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                None => panic!("still running after 15 s"),
            }
        };
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            rest.push(line);
        }
        rest.sort();
        (status.success(), rest)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_python_member_and_our_peer_hear_each_other() {
    if !python3_available() {
        notice("python3 not found: skipped a_python_member_and_our_peer_hear_each_other");
        return;
    }
    let group = Ipv4Addr::new(239, 255, 254, (1 + std::process::id() % 254) as u8).to_string();
    let mut python = Guard::start("python3", &["-c", PY_MEMBER, &group]);
    let ready = python.line("ready line from the Python member");
    let port = ready
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("not a ready line: {ready:?}"));
    let port = port.to_string();
    let ours = Guard::start(
        BIN,
        &[
            "peer",
            "--group",
            &group,
            "--port",
            &port,
            "--ttl",
            "0",
            "--count",
            "2",
            "from rust",
        ],
    );
    assert_eq!(
        ours.line("ready line from our peer"),
        format!("joined {group} on 127.0.0.1 port {port}")
    );
    // Our peer has joined (and sends at once); now the Python member may send.
    let stdin = python.child.stdin.as_mut().expect("piped stdin");
    stdin
        .write_all(b"go\n")
        .and_then(|()| stdin.flush())
        .expect("tell python to send");
    let (ok, heard) = python.finish();
    assert!(ok, "the Python member failed (its stderr is above)");
    assert_eq!(heard, ["Received: from python", "Received: from rust"]);
    let (ok, heard) = ours.finish();
    assert!(ok, "our peer failed (its stderr is above)");
    assert_eq!(heard, ["Received: from python", "Received: from rust"]);
}
