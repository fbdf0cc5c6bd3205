//! `wiremesh-controller`: `run` serves the control channel; `status`, `token create`, `revoke`
//! and `device add` talk to a running controller over its admin socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wiremesh_controller::daemon::{self, Clock, Limits, Options};
use wiremesh_controller::token::parse_ttl;
use wiremesh_proto::admin::{self, Outcome, Request, SOCKET_FILE, Status};
use wiremesh_proto::status::bytes;

const DEFAULT_STATE_DIR: &str = "/var/lib/wiremesh-controller";
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    version,
    about = "The wiremesh controller: member credentials, address leases and the signed netmap"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the control channel (QUIC on the configuration's controlPort).
    Run {
        /// The controller configuration `wiremesh plan` wrote (`<machine>.controller.json`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The network key file (`wiremesh keygen --network`); default: the configuration's
        /// networkKeyPath.
        #[arg(long, value_name = "FILE")]
        network_key: Option<PathBuf>,
        /// This machine's identity file (its node key authenticates the controller).
        #[arg(long, value_name = "FILE")]
        identity: PathBuf,
        /// Where the store (controller.sqlite) and the admin socket live.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// The UDP address to serve on instead of `[::]:controlPort` (e.g. `127.0.0.1:0` for a
        /// test on loopback; the address taken is logged).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// The UDP address to serve probes and the relay on instead of `[::]:relay.port` (e.g.
        /// `127.0.0.1:0`; the address taken is logged).
        #[arg(long, value_name = "ADDR")]
        relay_listen: Option<SocketAddr>,
    },
    /// Members, leases, connected agents and the epoch.
    Status {
        #[arg(long)]
        json: bool,
        /// [default: /var/lib/wiremesh-controller, or the one instance directory below it]
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Join tokens for agents outside the inventory.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Revoke a member's keys; takes effect in the next epoch.
    Revoke {
        name: String,
        /// [default: /var/lib/wiremesh-controller, or the one instance directory below it]
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Devices that cannot run wiremesh (a phone with the WireGuard app).
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a single-use join token for `--name`.
    Create {
        #[arg(long)]
        name: String,
        /// How long the token is valid: 90s, 15m, 1h, 7d (at most 30d).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// [default: /var/lib/wiremesh-controller, or the one instance directory below it]
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Issue a complete credential: prints a wg-quick configuration and its QR code.
    Add {
        name: String,
        /// [default: /var/lib/wiremesh-controller, or the one instance directory below it]
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            network_key,
            identity,
            state_dir,
            listen,
            relay_listen,
        } => run(Options {
            config,
            network_key,
            identity,
            state_dir,
            listen,
            relay_listen,
            limits: Limits::default(),
            clock: Clock::system(),
        }),
        Command::Status { json, state_dir } => {
            admin_call(state_dir, Request::Status, |o| match o {
                Outcome::Status(status) if json => {
                    serde_json::to_string_pretty(&status).map(|t| t + "\n").ok()
                }
                Outcome::Status(status) => Some(status_text(&status)),
                _ => None,
            })
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    name,
                    ttl,
                    state_dir,
                },
        } => {
            let ttl_seconds = match parse_ttl(&ttl) {
                Ok(t) => t,
                Err(e) => return fail(&format!("--ttl: {e}")),
            };
            admin_call(
                state_dir,
                Request::TokenCreate { name, ttl_seconds },
                |o| match o {
                    Outcome::Token { token, .. } => Some(format!("{token}\n")),
                    _ => None,
                },
            )
        }
        Command::Revoke { name, state_dir } => {
            admin_call(state_dir, Request::Revoke { name }, |o| match o {
                Outcome::Revoked { name, epoch } => Some(format!(
                    "revoked {}; epoch {epoch} tells the members\n",
                    printable(&name)
                )),
                _ => None,
            })
        }
        Command::Device {
            command: DeviceCommand::Add { name, state_dir },
        } => admin_call(state_dir, Request::DeviceAdd { name }, |o| match o {
            Outcome::Device { wg_quick, .. } => Some(device_text(&wg_quick)),
            _ => None,
        }),
    }
}

fn run(options: Options) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(daemon::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Sends `request` to the controller in `state_dir` and prints what `print` makes of the answer.
/// The state directory of the controller to ask: the one given, else the default directory
/// when a controller runs there, else the only instance directory below it that holds an admin
/// socket (the NixOS unit keeps `/var/lib/wiremesh-controller/<instance>`).
fn find_state_dir(given: Option<PathBuf>, root: &Path) -> Result<PathBuf, String> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    if root.join(SOCKET_FILE).exists() {
        return Ok(root.to_owned());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|dir| dir.join(SOCKET_FILE).exists())
        .collect();
    found.sort();
    match found.len() {
        0 | 1 => Ok(found.pop().unwrap_or_else(|| root.to_owned())),
        _ => Err(format!(
            "several controllers run here ({}); choose one with --state-dir",
            found
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn admin_call(
    state_dir: Option<PathBuf>,
    request: Request,
    print: impl FnOnce(Outcome) -> Option<String>,
) -> ExitCode {
    let state_dir = match find_state_dir(state_dir, Path::new(DEFAULT_STATE_DIR)) {
        Ok(dir) => dir,
        Err(e) => return fail(&e),
    };
    let socket = state_dir.join(SOCKET_FILE);
    let response = match admin::request(&socket, &request, ADMIN_TIMEOUT) {
        Ok(r) => r,
        Err(e) => return fail(&format!("{e} (is the controller running?)")),
    };
    match response.outcome {
        Outcome::Error { message } => fail(&printable(&message)),
        outcome => match print(outcome) {
            Some(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            None => fail("the controller gave an answer of the wrong kind"),
        },
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("wiremesh-controller: {message}");
    ExitCode::FAILURE
}

/// Text from the controller as it may be printed: control characters escaped.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_debug().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn status_text(status: &Status) -> String {
    let mut out = format!(
        "instance {}: epoch {}, issued at {}, expires at {} (in {} s)\n",
        printable(&status.instance),
        status.epoch,
        status.issued_at,
        status.expires_at,
        status.expires_at.saturating_sub(status.now)
    );
    if let Some(pool) = &status.pool {
        out.push_str(&format!(
            "pool {}: {} of {} addresses leased\n",
            pool.range, pool.leased, pool.size
        ));
    }
    out.push_str("name\tkind\tipv4\tipv6\tstate\tlast contact\n");
    for m in &status.members {
        let ipv4 = match (&m.ipv4, m.leased) {
            (Some(a), true) => format!("{a} (lease)"),
            (Some(a), false) => a.clone(),
            (None, _) => "-".into(),
        };
        let (state, contact) = match (&m.connection, m.revoked) {
            (_, true) => ("revoked".to_string(), "-".to_string()),
            (Some(c), false) => (
                format!("connected from {}", c.remote),
                format!("{} s ago", status.now.saturating_sub(c.last_contact)),
            ),
            (None, false) => ("not connected".to_string(), "-".to_string()),
        };
        out.push_str(&format!(
            "{}\t{}\t{ipv4}\t{}\t{state}\t{contact}\n",
            printable(&m.name),
            m.kind,
            m.ipv6
        ));
    }
    for t in &status.tokens {
        out.push_str(&format!(
            "join token for {} valid until {}\n",
            printable(&t.name),
            t.expires_at
        ));
    }
    match &status.relay {
        Some(relay) => out.push_str(&relay_text(relay)),
        None => out.push_str("relay: off\n"),
    }
    out
}

/// The relay in a few lines: where members are bound, what went through it, what it dropped.
fn relay_text(relay: &admin::RelayStatus) -> String {
    let mut out = format!(
        "relay on UDP port {}: {} members bound\n",
        relay.port,
        relay.bound.len()
    );
    for b in &relay.bound {
        out.push_str(&format!(
            "  {} at {} (probed {} s ago)\n",
            printable(&b.name),
            b.address,
            b.age_seconds
        ));
    }
    for p in &relay.pairs {
        out.push_str(&format!(
            "  relayed {} -> {}: {} packets, {}\n",
            printable(&p.from),
            printable(&p.to),
            p.packets,
            bytes(p.bytes)
        ));
    }
    let drops: Vec<String> = relay
        .drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    if !drops.is_empty() {
        out.push_str(&format!("  dropped: {}\n", drops.join(", ")));
    }
    out
}

fn device_text(wg_quick: &str) -> String {
    let qr = match qrcode::QrCode::new(wg_quick.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build(),
        Err(e) => format!("(no QR code: {e})"),
    };
    format!("{wg_quick}\n{qr}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_status_is_a_few_lines() {
        let relay = admin::RelayStatus {
            port: 51822,
            bound: vec![admin::RelayBinding {
                name: "laptop".into(),
                address: "198.18.1.1:40000".into(),
                age_seconds: 3,
            }],
            pairs: vec![admin::RelayPair {
                from: "laptop".into(),
                to: "desktop".into(),
                packets: 12,
                bytes: 150_000,
            }],
            drops: [("not-a-member".to_string(), 5), ("rate".to_string(), 0)]
                .into_iter()
                .collect(),
        };
        assert_eq!(
            relay_text(&relay),
            "relay on UDP port 51822: 1 members bound\n  laptop at 198.18.1.1:40000 (probed 3 s ago)\n  relayed laptop -> desktop: 12 packets, 146.48 KiB\n  dropped: not-a-member 5\n"
        );
    }

    #[test]
    fn the_state_dir_is_found_without_a_flag_when_it_is_unambiguous() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let given = PathBuf::from("/elsewhere");
        assert_eq!(find_state_dir(Some(given.clone()), root), Ok(given));
        // Nothing runs: the default, whose missing socket the request then reports.
        assert_eq!(find_state_dir(None, root), Ok(root.to_owned()));
        let instance = root.join("my-vpn");
        std::fs::create_dir(&instance).unwrap();
        std::fs::write(instance.join(SOCKET_FILE), "").unwrap();
        assert_eq!(find_state_dir(None, root), Ok(instance.clone()));
        let other = root.join("lab");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join(SOCKET_FILE), "").unwrap();
        let e = find_state_dir(None, root).unwrap_err();
        assert!(
            e.contains("several controllers") && e.contains("--state-dir"),
            "{e}"
        );
        std::fs::write(root.join(SOCKET_FILE), "").unwrap();
        assert_eq!(find_state_dir(None, root), Ok(root.to_owned()));
    }
}
