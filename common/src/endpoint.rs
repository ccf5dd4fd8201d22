//! Parsing `HOST:PORT` endpoints given on the command line.
//!
//! Clients take `--server HOST:PORT`. HOST may be an IPv4 address (`127.0.0.1`), an IPv6
//! address in brackets (`[::1]`) or a name (`localhost`), which is resolved with the system
//! resolver (`getaddrinfo(3)`, through [`std::net::ToSocketAddrs`]). A name can resolve to
//! several addresses, IPv6 and IPv4; the resolver's order is kept, and clients try them in turn.

use std::net::{SocketAddr, ToSocketAddrs};

/// An endpoint as the user wrote it, with the addresses it resolved to (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The text as given, e.g. `localhost:6789`, for messages.
    pub text: String,
    /// The resolved addresses, in the resolver's order; never empty.
    pub addrs: Vec<SocketAddr>,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses and resolves `HOST:PORT`; usable directly as a clap `value_parser`.
///
/// # Errors
/// A one-line message when the text has no port, the port is not a number in 0-65535, or the
/// name does not resolve (the resolver's own reason is included).
///
/// ```
/// let e = common::endpoint::parse("127.0.0.1:6789").unwrap();
/// assert_eq!(e.addrs, vec!["127.0.0.1:6789".parse().unwrap()]);
/// assert!(common::endpoint::parse("127.0.0.1").unwrap_err().contains("HOST:PORT"));
/// ```
pub fn parse(text: &str) -> Result<Endpoint, String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "`{text}` is not HOST:PORT (for example 127.0.0.1:6789, localhost:6789 or [::1]:6789)"
        ));
    };
    if host.is_empty() {
        return Err(format!("`{text}` has no host before the port"));
    }
    if port.parse::<u16>().is_err() {
        return Err(format!("`{port}` in `{text}` is not a port number (0-65535)"));
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{text}`: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("`{text}` resolved to no address"));
    }
    Ok(Endpoint {
        text: text.to_owned(),
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ipv4_ipv6_and_names() {
        assert_eq!(parse("[::1]:7").expect("v6").addrs[0].port(), 7);
        let local = parse("localhost:6789").expect("localhost resolves");
        assert!(
            local
                .addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 6789)
        );
    }

    #[test]
    fn rejects_bad_input_in_one_line() {
        for bad in ["", "6789", ":6789", "localhost:http", "localhost:70000", "[::1]"] {
            let err = parse(bad).expect_err(bad);
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
