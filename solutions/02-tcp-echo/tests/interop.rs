//! Interoperability with peers no one here wrote: Python's standard `socket` module, as in the
//! lecture's uppercase TCP pair, and `struct.pack('>H', ...)` frames, which is what Java's
//! `writeUTF` sends for ASCII text. Skipped, with a notice, where python3 is missing.

use std::time::Duration;

use assert_cmd::Command;
use common::testing::{ServerProcess, notice, python3_available};

const BIN: &str = env!("CARGO_BIN_EXE_solution02-tcp-echo");

/// The lecture's Python TCP client, made testable: a timeout, the endpoint from argv. Like the
/// lecture's, it sends once and prints what one `recv` returns, without half-closing.
const PY_RAW_CLIENT: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5.0)
s.connect((host, port))
s.sendall(sys.argv[3].encode())
print(s.recv(1024).decode())
s.close()
"#;

/// A Python client speaking writeUTF/readUTF frames: `>H` is a big-endian unsigned short.
const PY_UTF_CLIENT: &str = r#"
import socket, struct, sys
def recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("server closed early")
        data += chunk
    return data
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5.0)
s.connect((host, port))
for message in sys.argv[3:]:
    payload = message.encode()
    s.sendall(struct.pack(">H", len(payload)) + payload)
    (length,) = struct.unpack(">H", recv_exactly(s, 2))
    print(recv_exactly(s, length).decode())
s.close()
"#;

/// A Python echo server that prints our ready line and serves one connection: raw (echo until
/// EOF) or utf (one uppercase reply frame per frame).
const PY_SERVER: &str = r#"
import socket, struct, sys
mode = sys.argv[1]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0))
srv.listen(1)
srv.settimeout(10.0)
print("listening on %s:%d" % srv.getsockname(), flush=True)
conn, _ = srv.accept()
conn.settimeout(10.0)
if mode == "raw":
    while True:
        data = conn.recv(4096)
        if not data:
            break
        conn.sendall(data.upper())
else:
    buf = b""
    while True:
        data = conn.recv(4096)
        if not data:
            break
        buf += data
        while len(buf) >= 2:
            (n,) = struct.unpack(">H", buf[:2])
            if len(buf) < 2 + n:
                break
            payload, buf = buf[2:2 + n], buf[2 + n:]
            reply = payload.upper()
            conn.sendall(struct.pack(">H", len(reply)) + reply)
conn.close()
"#;

fn python(script: &str, args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .timeout(Duration::from_secs(10))
        .output()
        .expect("python3 runs")
}

#[test]
fn python_uppercase_client_against_our_raw_server() {
    if !python3_available() {
        notice("python3 not found: skipped python_uppercase_client_against_our_raw_server");
        return;
    }
    let server = ServerProcess::start(BIN, &["server", "--port", "0", "--uppercase"]);
    let addr = server.addr();
    let out = python(
        PY_RAW_CLIENT,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            "hello from python",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO FROM PYTHON\n");
}

#[test]
fn python_frame_client_against_our_utf_server() {
    if !python3_available() {
        notice("python3 not found: skipped python_frame_client_against_our_utf_server");
        return;
    }
    let server = ServerProcess::start(BIN, &["server", "--port", "0", "--framing", "utf"]);
    let addr = server.addr();
    let long = "x".repeat(300); // a length above 255 tells big-endian from little-endian
    let out = python(
        PY_UTF_CLIENT,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            "Hello, 7896",
            &long,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Hello, 7896\n{long}\n")
    );
}

#[test]
fn our_client_against_a_python_echo_server() {
    if !python3_available() {
        notice("python3 not found: skipped our_client_against_a_python_echo_server");
        return;
    }
    for (mode, expected) in [
        ("raw", "Received: QUIET WORDS\n"),
        ("utf", "Received: QUIET\nReceived:  WORDS\n"),
    ] {
        let server = ServerProcess::start("python3", &["-c", PY_SERVER, mode]);
        let out = Command::new(BIN)
            .args([
                "client",
                "--server",
                &server.addr().to_string(),
                "--framing",
                mode,
                "quiet",
                " words",
            ])
            .timeout(Duration::from_secs(10))
            .output()
            .expect("client runs");
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{mode}");
    }
}
