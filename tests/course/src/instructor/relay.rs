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
        reorder: args.reorder,
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::cli::{Cli, Cmd};

    fn relay_args(extra: &[&str]) -> Result<crate::cli::RelayArgs, clap::Error> {
        let args = ["cargo lab", "relay", "--server", "127.0.0.1:6789"];
        match Cli::try_parse_from(args.iter().chain(extra))?.command {
            Cmd::Relay(args) => Ok(args),
            other => panic!("not the relay command: {other:?}"),
        }
    }

    #[test]
    fn reorder_is_a_probability_like_drop_and_duplicate() {
        let args = relay_args(&["--reorder", "0.25", "--drop", "0.5"]).expect("valid");
        assert_eq!((args.reorder, args.drop, args.duplicate), (0.25, 0.5, 0.0));
        assert_eq!(
            relay_args(&[]).expect("valid").reorder,
            0.0,
            "no reordering by default"
        );
        let err = relay_args(&["--reorder", "1.5"]).expect_err("out of range");
        assert!(
            err.to_string().contains("not a probability between 0 and 1"),
            "{err}"
        );
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("relay")
            .expect("the relay command")
            .render_long_help()
            .to_string();
        for flag in ["--drop <P>", "--duplicate <P>", "--reorder <P>"] {
            assert!(help.contains(flag), "{flag} in:\n{help}");
        }
        assert!(help.contains("delivering it after the next one"), "{help}");
    }
}
