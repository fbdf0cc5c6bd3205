//! A reload that waits seconds for DNS must hold up nothing else. While the agent resolves an
//! endpoint name through a name server that never answers, its persistent keepalives keep going
//! out, and once the agent stops waiting (after 5 s) the reload is applied without touching the
//! sessions. SIGTERM meanwhile stops the agent at once, cleanly, and the reload is not applied.
//! A name that did not resolve is looked up again without a SIGHUP, and used once it resolves.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wiremesh_core::config::AgentConfig;
use wiremesh_netns_tests::{AGENT_PORT, Lab, Netns, TUN_NAME, require_tools, serial, wait_for};

/// A name server on the underlay that drops every query.
const DEAD_DNS4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 53);
const DEAD_DNS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 0x53);
/// The endpoint name the reload has to resolve (`.test` is reserved: it never exists).
const SLOW_NAME: &str = "slow.wiremesh.test";
/// What follows the name server in alpha's resolv.conf: `search .` with a high `ndots` makes
/// glibc ask for the name once, as given, whatever the machine's host name, so a lookup gives up
/// after timeout × attempts = 6 s, later than the agent's own 5 s deadline.
const RESOLVER_OPTIONS: &str = "search .\noptions ndots:5 timeout:3 attempts:2\n";
/// The stall a reload has when its lookup gets no answer (the agent waits 5 s), less a margin.
const MIN_STALL: Duration = Duration::from_secs(4);
/// alpha's persistent keepalive towards beta, in seconds.
const KEEPALIVE_SECS: u16 = 1;
/// Keepalives beta must get from alpha while alpha's reload stalls (about five are due).
const MIN_KEEPALIVES_DURING_STALL: u64 = 3;
/// A WireGuard keepalive: 32 bytes of transport message, 40 with the UDP header.
const KEEPALIVE_UDP_LEN: u16 = 40;

/// Files in `/etc/netns/<namespace>/`, which `ip netns exec` mounts over those of /etc for the
/// programs it starts in that namespace; removed on drop, also when the test fails. A file is
/// mounted by inode, so rewriting it in place changes what a running program reads.
struct NetnsEtc {
    dir: PathBuf,
    /// Whether /etc/netns itself was made here (then it is removed too, when empty).
    made_parent: bool,
}

impl NetnsEtc {
    fn install(ns: &Netns, files: &[(&str, &str)]) -> Self {
        let parent = Path::new("/etc/netns");
        let guard = Self {
            dir: parent.join(ns.name()),
            made_parent: !parent.exists(),
        };
        std::fs::create_dir_all(&guard.dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", guard.dir.display()));
        for (name, text) in files {
            guard.write(name, text);
        }
        guard
    }

    /// Writes `/etc/netns/<namespace>/<name>` in place.
    fn write(&self, name: &str, text: &str) {
        let file = self.dir.join(name);
        std::fs::write(&file, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.made_parent {
            let _ = self.dir.parent().map(std::fs::remove_dir);
        }
    }
}

/// The packets counted by the (single) counter of nftables table `inet <table>` in `ns`.
fn nft_packets(ns: &Netns, table: &str) -> u64 {
    let listing = ns.run(&["nft", "list", "table", "inet", table]);
    let words: Vec<&str> = listing.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "packets")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or_else(|| panic!("no packet counter in table {table}:\n{listing}"))
}

/// The position of peer `name` in `config`.
fn peer(config: &AgentConfig, name: &str) -> usize {
    config
        .peers
        .iter()
        .position(|p| p.name == name)
        .unwrap_or_else(|| panic!("the plan has no peer {name}"))
}

/// DNS queries the dead name server in `ns` has dropped so far.
fn dns_queries(ns: &Netns) -> u64 {
    nft_packets(ns, "wm_dead_dns")
}

/// A planned lab whose first member, alpha, asks a name server that drops every query.
struct DeadDnsLab {
    // Fields drop in order: the agents stop before the name server and resolv.conf go.
    lab: Lab,
    dead_dns: Netns,
    _resolv_conf: NetnsEtc,
}

impl DeadDnsLab {
    fn new(names: &[&str]) -> Self {
        require_tools(&["nft"]);
        let lab = Lab::planned(names);
        let dead_dns = Netns::new("deaddns");
        lab.plug(&dead_dns, DEAD_DNS4, DEAD_DNS6);
        dead_dns.nft(
            "table inet wm_dead_dns {\n\
             \tchain in { type filter hook input priority 0; meta l4proto { udp, tcp } th dport 53 counter drop; }\n\
             }\n",
        );
        let resolv_conf = NetnsEtc::install(
            &lab.members[0].ns,
            &[(
                "resolv.conf",
                &format!("nameserver {DEAD_DNS4}\n{RESOLVER_OPTIONS}"),
            )],
        );
        DeadDnsLab {
            lab,
            dead_dns,
            _resolv_conf: resolv_conf,
        }
    }
}

#[test]
fn timers_keep_running_while_a_reload_waits_for_dns() {
    let _one_at_a_time = serial();
    let mut dead = DeadDnsLab::new(&["alpha", "beta", "gamma"]);
    let lab = &mut dead.lab;
    let alpha_underlay = lab.members[0].underlay4;
    lab.members[1].ns.nft(&format!(
            "table inet wm_keepalives {{\n\
             \tchain in {{ type filter hook input priority 0; ip saddr {alpha_underlay} udp dport {AGENT_PORT} udp length {KEEPALIVE_UDP_LEN} counter; }}\n\
             }}\n"
        ),
    );
    let keepalives = |lab: &Lab| nft_packets(&lab.members[1].ns, "wm_keepalives");

    let mut config = lab.members[0].config.clone().expect("planned");
    let beta = peer(&config, "beta");
    config.peers[beta].persistent_keepalive = Some(KEEPALIVE_SECS);
    lab.members[0].write_config(config.clone());
    lab.start_all();
    for to in [1, 2] {
        let dst = IpAddr::V4(lab.members[to].overlay4());
        lab.members[0]
            .ns
            .wait_ping(dst, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("alpha → {}: {e}", lab.members[to].name));
    }
    // The measure works: with nothing reloading, beta counts alpha's keepalives.
    let idle = keepalives(lab);
    wait_for(
        "beta to count two keepalives from alpha",
        Duration::from_secs(5),
        || keepalives(lab) >= idle + 2,
    );

    // gamma gets a second endpoint by name, which the reload must resolve.
    let gamma = peer(&config, "gamma");
    config.peers[gamma]
        .endpoints
        .push(format!("{SLOW_NAME}:{AGENT_PORT}"));
    lab.members[0].write_config(config);
    let beta_before = lab.members[0].peer_status("beta");
    let log_before = lab.members[0].agent_log();
    let reloads_before = log_before.matches("reloaded").count();
    let sighup = Instant::now();
    lab.members[0].signal_agent(libc::SIGHUP);
    // Past any keepalive that was on its way when the reload began.
    std::thread::sleep(Duration::from_millis(300));
    let at_start = keepalives(lab);
    let mut during = at_start;
    wait_for(
        "alpha to log \"reloaded\" after SIGHUP",
        Duration::from_secs(20),
        || {
            // Counted before the log is read: a keepalive counted here was sent before the
            // reload finished.
            let count = keepalives(lab);
            if lab.members[0].agent_log().matches("reloaded").count() > reloads_before {
                return true;
            }
            during = count;
            false
        },
    );
    let stall = sighup.elapsed();
    let queries = dns_queries(&dead.dead_dns);
    assert!(
        stall >= MIN_STALL && queries > 0,
        "the reload took {stall:?} and sent {queries} DNS queries: the name lookup did not stall, \
         so this test shows nothing"
    );
    let sent = during - at_start;
    eprintln!(
        "reload stalled {stall:?} on {queries} DNS queries; beta got {sent} keepalives meanwhile"
    );
    assert!(
        sent >= MIN_KEEPALIVES_DURING_STALL,
        "beta got {sent} keepalives from alpha during alpha's {stall:?} reload (persistent \
         keepalive {KEEPALIVE_SECS} s, at least {MIN_KEEPALIVES_DURING_STALL} expected): alpha's \
         timers stood still while it resolved {SLOW_NAME}"
    );

    // The reload was applied: the name is reported, the config kept as the last good one, and
    // no session was touched.
    let alpha = &lab.members[0];
    let logged = alpha
        .agent_log()
        .get(log_before.len()..)
        .unwrap_or_default()
        .to_owned();
    assert!(
        logged.contains(&format!(
            "peer 'gamma': endpoint '{SLOW_NAME}:{AGENT_PORT}'"
        )),
        "alpha did not warn about the unresolvable endpoint:\n{logged}"
    );
    assert!(
        !logged.contains("member=beta") && !logged.contains("member=gamma"),
        "the reload touched a member:\n{logged}"
    );
    let saved = std::fs::read_to_string(alpha.state_dir().join("last-good-config.json"))
        .expect("alpha keeps its last good config");
    assert!(
        saved.contains(SLOW_NAME),
        "alpha's last good config is not the reloaded one:\n{saved}"
    );
    for to in [1, 2] {
        let dst = IpAddr::V4(lab.members[to].overlay4());
        assert!(
            alpha.ns.ping_once(dst),
            "alpha → {} broke after the reload",
            lab.members[to].name
        );
    }
    alpha.assert_same_session("beta", &beta_before);
}

#[test]
fn sigterm_does_not_wait_for_a_reload_stuck_on_dns() {
    let _one_at_a_time = serial();
    let mut dead = DeadDnsLab::new(&["alpha", "beta"]);
    dead.lab.start_all_and_ping_second();

    let alpha = &mut dead.lab.members[0];
    let mut config = alpha.config.clone().expect("planned");
    let beta = peer(&config, "beta");
    config.peers[beta]
        .endpoints
        .push(format!("{SLOW_NAME}:{AGENT_PORT}"));
    alpha.write_config(config);
    let sighup = Instant::now();
    alpha.signal_agent(libc::SIGHUP);
    wait_for(
        "alpha's reload to ask the name server",
        Duration::from_secs(3),
        || dns_queries(&dead.dead_dns) > 0,
    );

    let alpha = &mut dead.lab.members[0];
    assert!(
        !alpha.agent_log().contains("reloaded"),
        "the reload finished although the name server never answers:\n{}",
        alpha.agent_log()
    );
    alpha.signal_agent(libc::SIGTERM);
    let took = wait_for("alpha to exit after SIGTERM", MIN_STALL, || {
        !alpha.agent_running()
    });
    let since_sighup = sighup.elapsed();
    eprintln!("alpha exited {took:?} after SIGTERM, {since_sighup:?} after SIGHUP");
    assert!(
        since_sighup < MIN_STALL,
        "alpha exited {since_sighup:?} after SIGHUP: it waited for the name lookup to give up"
    );
    // The log is the agent's: read it before `stop` lets go of the agent.
    let log = alpha.agent_log();
    let status = alpha.stop();
    assert!(status.success(), "alpha exited with {status}:\n{log}");
    assert!(
        log.contains("stopped") && !log.contains("reloaded"),
        "alpha did not stop cleanly, or applied the half-done reload:\n{log}"
    );
    let link = alpha
        .ns
        .try_run(&["ip", "link", "show", TUN_NAME], Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("ip link show: {e}"));
    assert!(
        !link.success(),
        "alpha's interface {TUN_NAME} outlived the agent"
    );
}

#[test]
fn a_name_that_did_not_resolve_is_looked_up_again_and_used_without_a_sighup() {
    let _one_at_a_time = serial();
    let mut lab = Lab::planned(&["alpha", "beta"]);
    const NAME: &str = "beta.wiremesh.test";
    // Beta does not know where alpha is, so only alpha can start the session, and alpha knows
    // beta only by a name that is not in its hosts file yet. Its name server is on its own
    // loopback, where nothing answers: a lookup fails at once instead of waiting.
    let mut alpha_config = lab.members[0].config.clone().expect("planned");
    let beta = peer(&alpha_config, "beta");
    alpha_config.peers[beta].endpoints = vec![format!("{NAME}:{AGENT_PORT}")];
    lab.members[0].write_config(alpha_config);
    let mut beta_config = lab.members[1].config.clone().expect("planned");
    let alpha = peer(&beta_config, "alpha");
    beta_config.peers[alpha].endpoints = Vec::new();
    lab.members[1].write_config(beta_config);
    let hosts = "127.0.0.1 localhost\n";
    let etc = NetnsEtc::install(
        &lab.members[0].ns,
        &[
            (
                "resolv.conf",
                "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
            ),
            ("hosts", hosts),
        ],
    );
    lab.start_all();
    let beta4 = IpAddr::V4(lab.members[1].overlay4());
    assert!(
        lab.members[0]
            .agent_log()
            .contains(&format!("endpoint '{NAME}:{AGENT_PORT}'")),
        "alpha did not warn about the name it could not resolve:\n{}",
        lab.members[0].agent_log()
    );
    assert!(
        !lab.members[0].ns.ping_once(beta4),
        "alpha reached beta without knowing where it is"
    );

    etc.write(
        "hosts",
        &format!("{hosts}{} {NAME}\n", lab.members[1].underlay4),
    );
    let took = lab.members[0]
        .ns
        .wait_ping(beta4, Duration::from_secs(20))
        .unwrap_or_else(|e| {
            panic!(
                "alpha → beta after {NAME} became resolvable: {e}\n{}",
                lab.members[0].agent_log()
            )
        });
    eprintln!("alpha reached beta {took:?} after the name became resolvable");
    let log = lab.members[0].agent_log();
    assert!(
        log.contains("endpoint names resolve differently now") && !log.contains("reloaded"),
        "alpha should have picked the name up on its own, without a reload:\n{log}"
    );
}
