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
        #[arg(long)]
        config: PathBuf,
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
            identity,
            state_dir,
            netmap,
            status_socket,
        } => agent::run(agent::Options {
            config,
            identity,
            state_dir,
            netmap,
            status_socket,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
