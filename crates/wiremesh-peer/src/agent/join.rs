//! `wiremesh-peer run --join TICKET`: a machine outside the inventory becomes a member. The
//! ticket gives the instance, the name, the network key and the controllers; the agent enrolls
//! once with the token it carries, keeps the resulting configuration and netmap in its state
//! directory, and from then on starts like any member, from that configuration. A second start
//! with the same arguments finds the configuration and spends no token.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use wiremesh_core::keys::Identity;
use wiremesh_core::netmap::Netmap;
use wiremesh_core::ticket::JoinTicket;

use super::config::{self, StateDir, write_atomically};
use super::{Options, control, default_state_dir, now_unix, run, store};

/// The configuration a joined agent keeps in its state directory.
const JOINED_CONFIG: &str = "joined-config.json";

/// What `wiremesh-peer run --join` was told.
pub struct JoinOptions {
    pub ticket: String,
    pub listen_port: u16,
    pub interface: Option<String>,
    pub identity: PathBuf,
    pub state_dir: Option<PathBuf>,
    pub status_socket: Option<PathBuf>,
}

/// Joins (unless this state directory holds a joined configuration already), then runs the
/// agent until SIGTERM/SIGINT.
pub fn join(options: JoinOptions) -> Result<()> {
    let ticket = JoinTicket::decode(&options.ticket).context("--join")?;
    let config = ticket
        .agent_config(options.listen_port, options.interface.clone())
        .map_err(|e| anyhow!("--join: the ticket gives no valid configuration: {e}"))?;
    let state_dir = options
        .state_dir
        .unwrap_or_else(|| default_state_dir(&config.interface));
    let state = StateDir::open(&state_dir)?;
    let path = state_dir.join(JOINED_CONFIG);
    if path.exists() {
        let (_, joined) = config::read(&path)?;
        if (joined.instance.as_str(), joined.machine.as_str())
            != (config.instance.as_str(), config.machine.as_str())
        {
            bail!(
                "--join: this machine joined instance {:?} as {:?} ({}), but the ticket is for \
                 instance {:?} as {:?}; remove that file (or use another --state-dir) to join anew",
                joined.instance,
                joined.machine,
                path.display(),
                config.instance,
                config.machine
            );
        }
        tracing::info!(
            "{} exists: this machine joined before; the ticket is not used again, and the \
             stored configuration (port, interface) applies",
            path.display()
        );
    } else {
        let identity = Identity::load(&options.identity).map_err(|e| anyhow!("{e}"))?;
        let control = control::Control {
            instance: config.instance.clone(),
            name: config.machine.clone(),
            identity,
            controllers: control::controllers(&config),
        };
        tracing::info!(name = %config.machine, instance = %config.instance, "joining");
        let enrolled = control::join(&control, &ticket.token).context("cannot join")?;
        let netmap = Netmap::decode(&enrolled.netmap)
            .map_err(|e| anyhow!("the controller sent no valid netmap: {e}"))?;
        config::accept(&netmap, &config, None, None, now_unix())
            .map_err(|e| anyhow!("the controller's netmap is refused: {e}"))?;
        // The configuration first: with it a later start enrolls by key, and the controller
        // sends the netmap again; the netmap alone would be no use.
        write_atomically(&path, config.to_json().as_bytes()).with_context(|| {
            format!("cannot keep the joined configuration in {}", path.display())
        })?;
        store("netmap", state.save_netmap(&netmap));
        tracing::info!(
            ipv4 = ?enrolled.addresses.ipv4,
            ipv6 = %enrolled.addresses.ipv6,
            "joined; the configuration is kept in {}",
            path.display()
        );
    }
    run(Options {
        config: path,
        identity: options.identity,
        state_dir: Some(state_dir),
        netmap: None,
        status_socket: options.status_socket,
    })
}
