//! `wiremesh-lab`: the topologies of this crate for shell scripts (`netns-tests/bench.sh`). `up`
//! builds one and prints shell assignments of its namespace names and addresses; the namespaces
//! then outlive the tool, and `down` removes them by name, also after the script that made them
//! was killed (`down --orphans` finds those whose process is gone).
//!
//! ```text
//! wiremesh-lab up direct --name PREFIX              # two hosts on the public switch
//! wiremesh-lab up relay  --name PREFIX [--symmetric] # a controller host on the switch, two hosts
//!                                                    # each behind its own NAT, UDP between the
//!                                                    # NATs blocked (or both NATs symmetric)
//! wiremesh-lab down --name PREFIX                   # every namespace PREFIX-…
//! wiremesh-lab down --orphans PREFIX                # every PREFIX<pid>-… whose pid is gone
//! ```
//!
//! Namespaces are `PREFIX-<role>`; a script that passes `--name <tag><its pid>` makes them
//! recognisable as orphans once it is gone. Addresses: the switch 198.18.0.0/24, the NATs' LANs
//! 198.19.1.0/24 and 198.19.2.0/24.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use wiremesh_lab::{
    Mapping, Namespace, Topology, delete_namespace, namespaces, orphaned_namespaces,
};

/// How long what still runs in a namespace being removed has after SIGTERM.
const GRACE: Duration = Duration::from_secs(2);

const USAGE: &str = "usage: wiremesh-lab up direct|relay --name PREFIX [--symmetric]
       wiremesh-lab down --name PREFIX | --orphans PREFIX";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["up", kind, rest @ ..] => parse_up(rest).and_then(|(name, symmetric)| {
            let lines = match *kind {
                "direct" => up_direct(&name)?,
                "relay" => up_relay(&name, symmetric)?,
                other => return Err(format!("unknown topology {other:?} (direct, relay)")),
            };
            for line in lines {
                println!("{line}");
            }
            Ok(())
        }),
        ["down", "--name", prefix] => valid_prefix(prefix).and_then(|()| down(prefix)),
        ["down", "--orphans", prefix] => {
            valid_prefix(prefix).map(|()| remove(&orphaned_namespaces(prefix)))
        }
        ["-h" | "--help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wiremesh-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name PREFIX [--symmetric]` in any order.
fn parse_up(args: &[&str]) -> Result<(String, bool), String> {
    let (mut name, mut symmetric) = (None, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match *arg {
            "--name" => name = it.next().map(|s| (*s).to_owned()),
            "--symmetric" => symmetric = true,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let name = name.ok_or_else(|| format!("--name PREFIX is required\n{USAGE}"))?;
    valid_prefix(&name)?;
    Ok((name, symmetric))
}

/// A prefix is 1 to 32 letters, digits, `_` or `.`: it becomes part of file names in /run/netns.
fn valid_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && !prefix.starts_with('.')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the prefix {prefix:?} must be 1 to 32 letters, digits, '_' or '.'"
        ))
    }
}

fn ns(prefix: &str, role: &str) -> Result<Namespace, String> {
    Namespace::create(format!("{prefix}-{role}"))
}

fn switch(prefix: &str) -> Result<Topology, String> {
    Topology::new(
        ns(prefix, "switch")?,
        "198.18.0.0/24".parse().expect("a valid prefix"),
        None,
    )
}

/// Two hosts on the switch, a at 198.18.0.1 and b at 198.18.0.2. Built in full before anything is
/// kept: a failure halfway removes what was made.
fn up_direct(prefix: &str) -> Result<Vec<String>, String> {
    let topology = switch(prefix)?;
    let (a, b) = (ns(prefix, "a")?, ns(prefix, "b")?);
    let (addr_a, addr_b) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
    topology.plug(&a, addr_a, None)?;
    topology.plug(&b, addr_b, None)?;
    let mut lines = vec![
        assign("LAB_NS_A", &a.keep()),
        assign("LAB_NS_B", &b.keep()),
        assign("LAB_ADDR_A", &addr_a.to_string()),
        assign("LAB_ADDR_B", &addr_b.to_string()),
    ];
    let kept = topology.keep();
    lines.push(assign("LAB_SWITCH", &kept[0]));
    Ok(lines)
}

/// A controller host c on the switch at 198.18.0.1; NAT routers at 198.18.0.11 (LAN
/// 198.19.1.0/24) and 198.18.0.12 (LAN 198.19.2.0/24), host a behind the first and b behind the
/// second; UDP between the two NATs' public addresses blocked, or with `symmetric` both NATs
/// symmetric and nothing blocked.
fn up_relay(prefix: &str, symmetric: bool) -> Result<Vec<String>, String> {
    let mut topology = switch(prefix)?;
    let c = ns(prefix, "c")?;
    let addr_c = Ipv4Addr::new(198, 18, 0, 1);
    topology.plug(&c, addr_c, None)?;
    let mapping = if symmetric {
        Mapping::Symmetric
    } else {
        Mapping::EndpointIndependent
    };
    let (public_a, public_b) = (Ipv4Addr::new(198, 18, 0, 11), Ipv4Addr::new(198, 18, 0, 12));
    let nat_a = topology.add_nat(
        ns(prefix, "nat-a")?,
        mapping,
        public_a,
        "198.19.1.0/24".parse().expect("a valid prefix"),
    )?;
    let nat_b = topology.add_nat(
        ns(prefix, "nat-b")?,
        mapping,
        public_b,
        "198.19.2.0/24".parse().expect("a valid prefix"),
    )?;
    let (a, b) = (ns(prefix, "a")?, ns(prefix, "b")?);
    let addr_a = topology.attach(&a, nat_a)?;
    let addr_b = topology.attach(&b, nat_b)?;
    if !symmetric {
        topology.block_udp(nat_a, nat_b)?;
    }
    let mut lines = vec![
        assign("LAB_NS_C", &c.keep()),
        assign("LAB_NS_A", &a.keep()),
        assign("LAB_NS_B", &b.keep()),
        assign("LAB_ADDR_C", &addr_c.to_string()),
        assign("LAB_ADDR_A", &addr_a.to_string()),
        assign("LAB_ADDR_B", &addr_b.to_string()),
        assign("LAB_PUBLIC_A", &public_a.to_string()),
        assign("LAB_PUBLIC_B", &public_b.to_string()),
        assign(
            "LAB_MAPPING",
            if symmetric {
                "symmetric"
            } else {
                "endpoint-independent,blocked"
            },
        ),
    ];
    let kept = topology.keep();
    lines.push(assign("LAB_SWITCH", &kept[0]));
    lines.push(assign("LAB_NAT_A", &kept[1]));
    lines.push(assign("LAB_NAT_B", &kept[2]));
    Ok(lines)
}

/// A shell assignment; every value here is made of characters a shell takes literally.
fn assign(key: &str, value: &str) -> String {
    debug_assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:".contains(&b))
    );
    format!("{key}={value}")
}

/// Removes every namespace `PREFIX-…`.
fn down(prefix: &str) -> Result<(), String> {
    let start = format!("{prefix}-");
    let ours: Vec<String> = namespaces()?
        .into_iter()
        .filter(|n| n.starts_with(&start))
        .collect();
    remove(&ours);
    Ok(())
}

fn remove(names: &[String]) {
    for name in names {
        if let Err(e) = delete_namespace(name, GRACE) {
            eprintln!("wiremesh-lab: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_plain_names() {
        for ok in ["wmb123", "a", "x_y.z"] {
            assert!(valid_prefix(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "a b", ".hidden", "a-b", &"x".repeat(33)] {
            assert!(valid_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn up_takes_a_name_and_an_optional_flag() {
        assert_eq!(
            parse_up(&["--name", "wmb1", "--symmetric"]).unwrap(),
            ("wmb1".into(), true)
        );
        assert_eq!(
            parse_up(&["--name", "wmb1"]).unwrap(),
            ("wmb1".into(), false)
        );
        assert!(parse_up(&["--symmetric"]).is_err());
        assert!(parse_up(&["--name"]).is_err());
        assert!(parse_up(&["--nme", "x"]).is_err());
    }
}
