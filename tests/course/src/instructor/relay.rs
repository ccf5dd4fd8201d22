//! `cargo lab relay`: a seeded lossy UDP relay (`common::relay`) in front of a server, for demos.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::RelayArgs;

/// Runs `cargo lab relay`.
pub fn command(args: &RelayArgs) -> Result<bool> {
    let to_client = common::relay::Faults {
        drop: args.drop,
        duplicate: args.duplicate,
        delay: Duration::from_millis(args.delay),
        ..Default::default()
    };
    let to_server = common::relay::Faults {
        drop_first: args.drop_first,
        ..to_client.clone()
    };
    relay(
        &args.server,
        to_server,
        to_client,
        args.seed,
        Duration::from_secs(args.duration),
    )
}

fn relay(
    server: &common::endpoint::Endpoint,
    to_server: common::relay::Faults,
    to_client: common::relay::Faults,
    seed: u64,
    duration: Duration,
) -> Result<bool> {
    let target = server.addrs[0];
    let relay = common::relay::UdpRelay::start(target, to_server, to_client, seed)
        .with_context(|| format!("cannot start a relay to {target}"))?;
    common::ready::announce(relay.addr())?;
    eprintln!(
        "relaying to {target} for {} s (Ctrl-C stops it); seed {seed}",
        duration.as_secs()
    );
    let deadline = Instant::now() + duration;
    let mut reported = (0, 0);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let stats = relay.stats();
        let now = (stats.forwarded.load(Relaxed), stats.dropped.load(Relaxed));
        if now != reported {
            eprintln!("forwarded {} datagrams, dropped {}", now.0, now.1);
            reported = now;
        }
    }
    Ok(true)
}
