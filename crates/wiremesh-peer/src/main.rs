//! `wiremesh-peer`: the peer agent daemon. `run` brings up the TUN interface and the WireGuard
//! sessions described by an agent config and serves until SIGTERM; see the library for the
//! sans-IO core and `agent` for the I/O shell.

mod agent;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wiremesh-peer", version, about = "The wiremesh peer agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring up the mesh interface and run until SIGTERM (SIGHUP re-reads the config).
    Run {
        /// The agent config written by `wiremesh plan`.
        #[arg(long, required_unless_present = "join", conflicts_with = "join")]
        config: Option<PathBuf>,
        /// Join with a ticket from `wiremesh-controller token create` instead of a planned
        /// config; the state directory then keeps the joined config for later starts.
        #[arg(long, value_name = "TICKET")]
        join: Option<String>,
        /// With --join: the UDP port of the tunnels.
        #[arg(long, requires = "join", default_value_t = wiremesh_core::ticket::DEFAULT_LISTEN_PORT)]
        listen_port: u16,
        /// With --join: the interface name [default: wm-<instance>].
        #[arg(long, requires = "join")]
        interface: Option<String>,
        /// The identity file written by `wiremesh keygen` (private keys).
        #[arg(long)]
        identity: PathBuf,
        /// Directory for state kept across restarts (the last good config and netmap, the
        /// highest netmap epoch accepted) [default: /var/lib/wiremesh/<interface>].
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// A signed netmap (binary, from `wiremesh netmap build`); its members replace the
        /// config's peer list once it verifies against the config's network key.
        #[arg(long)]
        netmap: Option<PathBuf>,
        /// Status socket path [default: /run/wiremesh/<interface>.sock].
        #[arg(long)]
        status_socket: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            join,
            listen_port,
            interface,
            identity,
            state_dir,
            netmap,
            status_socket,
        } => match (config, join) {
            (Some(config), _) => agent::run(agent::Options {
                config,
                identity,
                state_dir,
                netmap,
                status_socket,
            }),
            (None, Some(ticket)) => agent::join(agent::JoinOptions {
                ticket,
                listen_port,
                interface,
                identity,
                state_dir,
                status_socket,
            }),
            // clap requires one of the two.
            (None, None) => Err(anyhow::anyhow!("--config or --join is required")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
