//! Interoperability with peers no one here wrote: Python's standard `socket` module, as in the
//! lecture's uppercase UDP pair. Skipped, with a notice, where python3 is missing.

use std::time::Duration;

use assert_cmd::Command;
use common::testing::{ServerProcess, notice, python3_available};

const BIN: &str = env!("CARGO_BIN_EXE_solution01-udp");

/// The lecture's Python client, made testable: a timeout, and the endpoint from argv.
const PY_CLIENT: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5.0)
s.sendto(sys.argv[3].encode(), (host, port))
reply, server = s.recvfrom(2048)
print(reply.decode())
s.close()
"#;

/// A Python uppercase server that prints our ready line, answers one datagram and exits.
const PY_SERVER: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(10.0)
print("listening on %s:%d" % s.getsockname(), flush=True)
message, client = s.recvfrom(2048)
s.sendto(message.decode().upper().encode(), client)
"#;

#[test]
fn python_client_against_our_uppercase_server() {
    if !python3_available() {
        notice("python3 not found: skipped python_client_against_our_uppercase_server");
        return;
    }
    let server = ServerProcess::start(BIN, &["server", "--port", "0", "--uppercase"]);
    let addr = server.addr();
    let out = Command::new("python3")
        .args([
            "-c",
            PY_CLIENT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            "hello from python",
        ])
        .timeout(Duration::from_secs(10))
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO FROM PYTHON\n");
}

#[test]
fn our_client_against_a_python_server() {
    if !python3_available() {
        notice("python3 not found: skipped our_client_against_a_python_server");
        return;
    }
    let server = ServerProcess::start("python3", &["-c", PY_SERVER]);
    let out = Command::new(BIN)
        .args(["client", "--server", &server.addr().to_string(), "quiet words"])
        .timeout(Duration::from_secs(10))
        .output()
        .expect("client runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Reply: QUIET WORDS\n");
}
