//! Endpoint names. Names are looked up on at most [`MAX_THREADS`] threads at once, under one
//! deadline: a dead name server delays a start or a reload by [`DEADLINE`] at most, however many
//! names there are, and IP literals need no lookup at all. A lookup that misses the deadline goes
//! on in the background, and until it ends its name is not looked up again and keeps the last
//! answer it had, so a dead name server cannot make lookups pile up. The reload thread looks
//! names up again later (see [`Resolved::next_lookup`]), so a name that did not resolve at boot is
//! picked up once DNS works, the way WireGuard's `reresolve-dns` script does it.
//!
//! [`Resolver`] holds that bookkeeping with the lookup function passed in, so tests drive it
//! without DNS; the agent uses one per process (see [`Resolved::lookup`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use super::lock;

/// How long a start, a reload or a later lookup waits for names.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// How many lookup threads run at once, however many names there are.
pub const MAX_THREADS: usize = 16;
/// How soon a name that did not resolve is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(5);
/// How often names that did resolve are looked up again, to follow a changed address.
const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The addresses of one endpoint, or why there are none.
type Answer = Result<Vec<SocketAddr>, String>;
/// Where one call of [`Resolver::lookup`] receives its answers.
type Inbox = mpsc::Sender<(String, Answer)>;

/// The agent's resolver. One per process: the thread bound holds for every caller together.
static RESOLVER: LazyLock<Resolver> = LazyLock::new(|| Resolver::new(MAX_THREADS, lookup_one));

/// What every endpoint resolved to, or why it did not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolved(HashMap<String, Answer>);

impl Resolved {
    /// Looks up every endpoint (`host:port` or `[v6]:port`) and waits at most `deadline`.
    pub fn lookup<'a>(endpoints: impl IntoIterator<Item = &'a String>, deadline: Duration) -> Self {
        RESOLVER.lookup(endpoints, deadline)
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
        let sorted = |r: &Answer| {
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

/// Looks names up on at most `limit` threads at once, each name on one thread at a time.
pub struct Resolver(Arc<Pool>);

struct Pool {
    look_up: Box<dyn Fn(&str) -> Answer + Send + Sync>,
    limit: usize,
    work: Mutex<Work>,
}

#[derive(Default)]
struct Work {
    /// Names waiting for a thread, oldest first.
    queue: VecDeque<String>,
    /// Every name queued or being looked up, with the callers waiting for its answer (held
    /// weakly: a caller that gave up is simply skipped).
    in_flight: HashMap<String, Vec<Weak<Inbox>>>,
    /// The last answer of every name asked for lately, for a name whose lookup misses a deadline.
    last: HashMap<String, Answer>,
    /// Lookup threads running.
    threads: usize,
}

impl Resolver {
    pub fn new(limit: usize, look_up: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Self {
        Resolver(Arc::new(Pool {
            look_up: Box::new(look_up),
            limit,
            work: Mutex::default(),
        }))
    }

    /// Looks up every endpoint and waits at most `deadline`. A name whose lookup is still under
    /// way (from this call or an earlier one) is not looked up again: this call waits for that
    /// lookup, and if it misses the deadline, the name keeps its last answer.
    pub fn lookup<'a>(
        &self,
        endpoints: impl IntoIterator<Item = &'a String>,
        deadline: Duration,
    ) -> Resolved {
        let mut results = HashMap::new();
        let mut names = HashSet::new();
        for endpoint in endpoints {
            if let Ok(addr) = endpoint.parse::<SocketAddr>() {
                results.insert(endpoint.clone(), Ok(vec![canonical(addr)]));
            } else {
                names.insert(endpoint.clone());
            }
        }
        let (tx, rx) = mpsc::channel();
        let inbox = Arc::new(tx);
        let spawn = {
            let mut work = lock(&self.0.work);
            let Work {
                queue,
                in_flight,
                last,
                threads,
            } = &mut *work;
            last.retain(|name, _| names.contains(name) || in_flight.contains_key(name));
            for name in &names {
                let waiting = in_flight.entry(name.clone()).or_insert_with(|| {
                    queue.push_back(name.clone());
                    Vec::new()
                });
                waiting.retain(|w| w.strong_count() > 0);
                waiting.push(Arc::downgrade(&inbox));
            }
            let spawn = queue.len().min(self.0.limit.saturating_sub(*threads));
            *threads += spawn;
            spawn
        };
        let mut spawn_error = None;
        for _ in 0..spawn {
            let pool = self.0.clone();
            let spawned = std::thread::Builder::new()
                .name("wm-resolve".into())
                .spawn(move || pool.work());
            if let Err(e) = spawned {
                lock(&self.0.work).threads -= 1;
                spawn_error = Some(e);
            }
        }
        // With no thread started and none running, nothing can answer: waiting would only delay
        // the start.
        let mut pending = if spawn_error.is_some() && lock(&self.0.work).threads == 0 {
            0
        } else {
            names.len()
        };
        let end = Instant::now() + deadline;
        while pending > 0 {
            let left = end.saturating_duration_since(Instant::now());
            let Ok((name, answer)) = rx.recv_timeout(left) else {
                break;
            };
            results.insert(name, answer);
            pending -= 1;
        }
        let work = lock(&self.0.work);
        for name in names {
            if results.contains_key(&name) {
                continue;
            }
            let answer = match (work.last.get(&name), &spawn_error) {
                (Some(last), _) => last.clone(),
                (None, Some(e)) => Err(format!("could not be looked up: {e}")),
                (None, None) => Err(format!("gave no answer within {deadline:?}")),
            };
            results.insert(name, answer);
        }
        Resolved(results)
    }
}

impl Pool {
    /// A lookup thread: takes queued names until none is left.
    fn work(&self) {
        loop {
            let name = {
                let mut work = lock(&self.work);
                let Some(name) = work.queue.pop_front() else {
                    work.threads -= 1;
                    return;
                };
                name
            };
            let answer = (self.look_up)(&name);
            let waiting = {
                let mut work = lock(&self.work);
                work.last.insert(name.clone(), answer.clone());
                work.in_flight.remove(&name).unwrap_or_default()
            };
            for inbox in waiting.iter().filter_map(Weak::upgrade) {
                let _ = inbox.send((name.clone(), answer.clone()));
            }
        }
    }
}

fn lookup_one(endpoint: &str) -> Answer {
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
    use std::sync::Condvar;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// Stands in for a dead name server: every lookup blocks until the gate opens (10 s at most,
    /// so no test hangs), and the gate counts the lookups started and the most run at once.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        opened: Condvar,
        started: AtomicUsize,
        running: AtomicUsize,
        peak: AtomicUsize,
    }

    const BOUND: Duration = Duration::from_secs(10);
    const SHORT: Duration = Duration::from_millis(100);

    impl Gate {
        fn resolver(self: &Arc<Self>) -> Resolver {
            let gate = self.clone();
            Resolver::new(MAX_THREADS, move |_| {
                gate.started.fetch_add(1, SeqCst);
                let running = gate.running.fetch_add(1, SeqCst) + 1;
                gate.peak.fetch_max(running, SeqCst);
                let open = lock(&gate.open);
                drop(gate.opened.wait_timeout_while(open, BOUND, |open| !*open));
                gate.running.fetch_sub(1, SeqCst);
                Ok(vec!["198.18.0.1:51820".parse().unwrap()])
            })
        }

        fn set(&self, open: bool) {
            *lock(&self.open) = open;
            self.opened.notify_all();
        }

        /// Opens the gate and waits until `started` lookups have run and none runs any more.
        fn drain(&self, started: usize) {
            self.set(true);
            let end = Instant::now() + BOUND;
            while self.started.load(SeqCst) < started || self.running.load(SeqCst) > 0 {
                assert!(
                    Instant::now() < end,
                    "lookups still running after {BOUND:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("host-{i}.test:51820")).collect()
    }

    #[test]
    fn at_most_max_threads_look_up_names_at_once() {
        let gate = Arc::new(Gate::default());
        let resolver = gate.resolver();
        let names = names(100);
        let r = resolver.lookup(&names, SHORT);
        for name in &names {
            assert_eq!(r.get(name), Err("gave no answer within 100ms"), "{name}");
        }
        assert_eq!(gate.started.load(SeqCst), MAX_THREADS);
        // Once the name server answers, the same threads take the other names.
        gate.drain(names.len());
        assert_eq!(gate.peak.load(SeqCst), MAX_THREADS);
        let r = resolver.lookup(&names, BOUND);
        assert!(names.iter().all(|n| r.get(n).is_ok()));
        assert!(gate.peak.load(SeqCst) <= MAX_THREADS);
    }

    #[test]
    fn a_name_still_being_looked_up_is_not_looked_up_again_and_keeps_its_last_answer() {
        let gate = Arc::new(Gate::default());
        let resolver = gate.resolver();
        let names = names(3);
        gate.set(true);
        let answered = resolver.lookup(&names, BOUND);
        assert!(names.iter().all(|n| answered.get(n).is_ok()));
        gate.set(false);
        // The name server dies: every round waits for the lookups the first one started.
        let rounds: Vec<Resolved> = (0..3).map(|_| resolver.lookup(&names, SHORT)).collect();
        assert_eq!(gate.started.load(SeqCst), 2 * names.len());
        for r in rounds {
            assert_eq!(r, answered);
        }
        // A name never answered before says so, and its lookup is not started twice either.
        let new = vec!["new.test:1".to_string()];
        for _ in 0..3 {
            let r = resolver.lookup(&new, SHORT);
            assert_eq!(r.get(&new[0]), Err("gave no answer within 100ms"));
            assert_eq!(gate.started.load(SeqCst), 2 * names.len() + 1);
        }
        gate.drain(2 * names.len() + 1);
    }

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
