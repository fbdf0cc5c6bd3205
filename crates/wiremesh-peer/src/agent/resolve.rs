//! Endpoint names. Every name is looked up at once, each on a thread of its own, under one
//! deadline: a dead name server delays a start or a reload by [`DEADLINE`] at most, however many
//! names there are, and IP literals need no lookup at all. The reload thread looks names up again
//! later (see [`Resolved::next_lookup`]), so a name that did not resolve at boot is picked up once
//! DNS works, the way WireGuard's `reresolve-dns` script does it.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a start, a reload or a later lookup waits for names.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// How soon a name that did not resolve is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(5);
/// How often names that did resolve are looked up again, to follow a changed address.
const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// What every endpoint resolved to, or why it did not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolved(HashMap<String, Result<Vec<SocketAddr>, String>>);

impl Resolved {
    /// Looks up every endpoint (`host:port` or `[v6]:port`) and waits at most `deadline`.
    pub fn lookup<'a>(endpoints: impl IntoIterator<Item = &'a String>, deadline: Duration) -> Self {
        let mut results = HashMap::new();
        let (tx, rx) = mpsc::channel();
        let mut pending = 0;
        for endpoint in endpoints {
            if results.contains_key(endpoint) {
                continue;
            }
            if let Ok(addr) = endpoint.parse::<SocketAddr>() {
                results.insert(endpoint.clone(), Ok(vec![canonical(addr)]));
                continue;
            }
            let (tx, name) = (tx.clone(), endpoint.clone());
            // A lookup that outlives the deadline finishes on its own and its answer is dropped.
            let spawned = std::thread::Builder::new()
                .name("wm-resolve".into())
                .spawn(move || {
                    let result = lookup_one(&name);
                    let _ = tx.send((name, result));
                });
            let result = match spawned {
                Ok(_) => {
                    pending += 1;
                    Err(format!("gave no answer within {} s", deadline.as_secs()))
                }
                Err(e) => Err(format!("could not be looked up: {e}")),
            };
            results.insert(endpoint.clone(), result);
        }
        let end = Instant::now() + deadline;
        while pending > 0 {
            let left = end.saturating_duration_since(Instant::now());
            let Ok((name, result)) = rx.recv_timeout(left) else {
                break;
            };
            results.insert(name, result);
            pending -= 1;
        }
        Resolved(results)
    }

    /// The addresses of `endpoint`, or why there are none (to follow "endpoint '…' ").
    pub fn get(&self, endpoint: &str) -> Result<&[SocketAddr], &str> {
        match self.0.get(endpoint) {
            Some(Ok(addrs)) => Ok(addrs),
            Some(Err(why)) => Err(why),
            None => Err("was not looked up"),
        }
    }

    /// When to look the names up again: soon if one failed, now and then if all resolved, never
    /// when every endpoint is an IP literal.
    pub fn next_lookup(&self) -> Option<Duration> {
        let names = self
            .0
            .iter()
            .filter(|(e, _)| e.parse::<SocketAddr>().is_err());
        let mut any = false;
        for (_, result) in names {
            if result.is_err() {
                return Some(RETRY_EVERY);
            }
            any = true;
        }
        any.then_some(REFRESH_EVERY)
    }

    /// Whether both give every endpoint the same addresses, in any order (round-robin DNS
    /// reorders answers; that alone must not reset a member's endpoint), and fail for the same
    /// endpoints (for whatever reason: the mesh sees no difference).
    pub fn same_as(&self, other: &Resolved) -> bool {
        let sorted = |r: &Result<Vec<SocketAddr>, String>| {
            r.as_ref().ok().map(|a| {
                let mut a = a.clone();
                a.sort_unstable();
                a
            })
        };
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .all(|(e, r)| other.0.get(e).is_some_and(|o| sorted(o) == sorted(r)))
    }
}

fn lookup_one(endpoint: &str) -> Result<Vec<SocketAddr>, String> {
    let found = endpoint
        .to_socket_addrs()
        .map_err(|e| format!("is not usable (expected host:port or [v6]:port): {e}"))?;
    let mut addrs = Vec::new();
    for addr in found.map(canonical) {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err("resolves to no address".into());
    }
    Ok(addrs)
}

/// Sources reach the mesh canonical (IPv4, not v4-mapped); endpoints must compare equal to them.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(endpoints: &[&str]) -> Resolved {
        let owned: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
        Resolved::lookup(&owned, DEADLINE)
    }

    #[test]
    fn literals_resolve_without_a_lookup_and_bad_ones_say_why() {
        let r = lookup(&["198.18.0.1:51820", "[::ffff:198.18.0.2]:7", "no port"]);
        assert_eq!(
            r.get("198.18.0.1:51820"),
            Ok(&["198.18.0.1:51820".parse().unwrap()][..])
        );
        assert_eq!(
            r.get("[::ffff:198.18.0.2]:7"),
            Ok(&["198.18.0.2:7".parse().unwrap()][..]),
            "v4-mapped endpoints become IPv4"
        );
        let why = r.get("no port").unwrap_err();
        assert!(why.contains("expected host:port"), "{why}");
        assert_eq!(r.get("never asked"), Err("was not looked up"));
    }

    #[test]
    fn a_name_resolves_to_every_address_once() {
        // `localhost` comes from /etc/hosts, so no name server is asked.
        let r = lookup(&["localhost:51820"]);
        let addrs = r.get("localhost:51820").unwrap();
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 51820)
        );
        let mut unique = addrs.to_vec();
        unique.dedup();
        assert_eq!(unique.len(), addrs.len());
    }

    #[test]
    fn failed_names_are_retried_soon_resolved_ones_now_and_then_literals_never() {
        let mut r = lookup(&["198.18.0.1:51820"]);
        assert_eq!(r.next_lookup(), None);
        r.0.insert(
            "host.test:1".into(),
            Ok(vec!["198.18.0.3:1".parse().unwrap()]),
        );
        assert_eq!(r.next_lookup(), Some(REFRESH_EVERY));
        r.0.insert("down.test:1".into(), Err("gave no answer".into()));
        assert_eq!(r.next_lookup(), Some(RETRY_EVERY));
    }

    #[test]
    fn answers_in_another_order_are_the_same_but_other_addresses_are_not() {
        let a: SocketAddr = "198.18.0.1:1".parse().unwrap();
        let b: SocketAddr = "[fd00::1]:1".parse().unwrap();
        let with = |addrs: Vec<SocketAddr>| Resolved([("h.test:1".to_string(), Ok(addrs))].into());
        assert!(with(vec![a, b]).same_as(&with(vec![b, a])));
        assert!(!with(vec![a]).same_as(&with(vec![a, b])));
        let failed = |why: &str| Resolved([("h.test:1".to_string(), Err(why.to_string()))].into());
        assert!(!with(vec![a]).same_as(&failed("no")));
        assert!(failed("timed out").same_as(&failed("no address")));
        assert!(!with(vec![a]).same_as(&Resolved::default()));
    }
}
