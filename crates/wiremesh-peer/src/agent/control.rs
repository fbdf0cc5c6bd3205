//! The control thread: keeps one enrolled session with a controller of the config, hands every
//! netmap it pushes to the reload thread, and says in the status how the connection stands. It
//! runs a small tokio runtime of its own, so the hot threads never wait on the control plane, and
//! the tunnels do not depend on it: while no controller answers, the mesh runs on from the netmap
//! or peer list it has.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::mpsc::Receiver as AsyncReceiver;
use wiremesh_core::config::AgentConfig;
use wiremesh_core::keys::{Identity, NodePublicKey};
use wiremesh_core::netmap::MAX_ENDPOINTS;
use wiremesh_proto::client::{self, ControlError, ControlSettings, Enrolled, Push};

use super::Request;
use super::datapath::Shared;

/// How long a connection and enrollment may take before the next attempt.
const ENROLL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long looking up a controller's name may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the control thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);
/// How often the control thread looks whether the LAN addresses changed.
const REPORT_CHECK: Duration = Duration::from_secs(1);
/// Reports of the LAN addresses at most this often: the controller cuts off an agent that
/// reports more often than every `MIN_REPORT_INTERVAL` (10 s).
const REPORT_EVERY: Duration = Duration::from_secs(11);
/// The wait after the controller refused this agent (revoked, not a member): an operator has to
/// act first, so asking often helps nobody.
const AFTER_REFUSAL: Duration = Duration::from_secs(30);

/// A controller the agent may talk to: only those whose node key the config pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub name: String,
    pub endpoint: String,
    pub node_public_key: NodePublicKey,
}

/// The controllers of `config` with a pinned node key.
pub fn controllers(config: &AgentConfig) -> Vec<Controller> {
    config
        .controllers
        .iter()
        .filter_map(|c| {
            Some(Controller {
                name: c.name.clone(),
                endpoint: c.endpoint.clone(),
                node_public_key: c.node_public_key?,
            })
        })
        .collect()
}

/// How a controller connection stands, for `wiremesh status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerState {
    pub name: String,
    pub endpoint: String,
    pub connected: bool,
    pub last_error: Option<String>,
}

/// Reconnection delays: doubling from [`Backoff::FIRST`] up to [`Backoff::MAX`], each spread by
/// ±25 % so that agents that lost the same controller do not all come back in the same instant.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(500);
    pub const MAX: Duration = Duration::from_secs(5);

    /// The wait before the next attempt; `random` is any random number (it picks the jitter).
    pub fn next(&mut self, random: u32) -> Duration {
        let base = Self::FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        jittered(base, random)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// 75 % to 125 % of `base`, in steps of 1/1000 picked by `random`.
fn jittered(base: Duration, random: u32) -> Duration {
    base.mul_f64(0.75 + f64::from(random % 501) / 1000.0)
}

/// Who the agent is towards the controllers.
pub struct Control {
    pub instance: String,
    pub name: String,
    pub identity: Identity,
    pub controllers: Vec<Controller>,
}

/// Resolves `endpoint` (`host:port`) within [`LOOKUP_TIMEOUT`].
async fn resolve(endpoint: &str) -> Result<SocketAddr> {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host(endpoint))
        .await
        .map_err(|_| anyhow!("looking up {endpoint} took over {LOOKUP_TIMEOUT:?}"))?
        .with_context(|| format!("cannot look up {endpoint}"))?;
    found
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{endpoint} has no address"))
}

/// Connects to `controller` and enrolls (with `join`, a token, when the agent is not a member
/// yet).
pub async fn enroll(
    control: &Control,
    controller: &Controller,
    join: Option<String>,
    last_epoch: Option<u64>,
) -> Result<Enrolled> {
    let addr = resolve(&controller.endpoint).await?;
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let endpoint = quinn::Endpoint::client(local)
        .with_context(|| format!("cannot open a UDP socket for the controller at {addr}"))?;
    let settings = ControlSettings {
        instance: control.instance.clone(),
        name: control.name.clone(),
        identity: control.identity.clone(),
        controller: controller.node_public_key,
        join,
        last_epoch,
    };
    Ok(client::enroll(&endpoint, addr, &settings, ENROLL_TIMEOUT).await?)
}

/// Whether `e` is the controller's refusal of this agent, not a fault on the way.
fn is_refusal(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ControlError>(),
        Some(ControlError::Refused(_) | ControlError::Controller { .. })
    )
}

/// Enrolls once with a join token, for `wiremesh-peer run --join` before anything else runs. A
/// key that joined before (the token spent, but the answer or the saving of it lost) is let in
/// by its key alone, so an interrupted join can be run again.
pub fn join(control: &Control, token: &str) -> Result<Enrolled> {
    let runtime = runtime()?;
    let mut last = None;
    for controller in &control.controllers {
        let attempt = runtime
            .block_on(enroll(control, controller, Some(token.to_string()), None))
            .or_else(|e| {
                if !is_refusal(&e) {
                    return Err(e);
                }
                runtime
                    .block_on(enroll(control, controller, None, None))
                    .map_err(|_| e)
            });
        match attempt {
            Ok(enrolled) => {
                runtime.shutdown_background();
                return Ok(enrolled);
            }
            Err(e) => {
                tracing::warn!(controller = %controller.name, "cannot join: {e:#}");
                last = Some(e.context(format!(
                    "controller {} at {}",
                    controller.name, controller.endpoint
                )));
            }
        }
    }
    // A name lookup still running on the runtime's blocking pool is not waited for.
    runtime.shutdown_background();
    Err(last.unwrap_or_else(|| anyhow!("the join ticket names no controller")))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the control thread's runtime")
}

/// The control thread's body: until the agent stops, stay enrolled with one controller after
/// the other, passing every netmap to the reload thread.
pub fn serve(
    control: Control,
    shared: &Shared,
    netmaps: Sender<Request>,
    mut punches: AsyncReceiver<String>,
) {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e:#}; the agent runs without a controller");
            return;
        }
    };
    runtime.block_on(async {
        tokio::select! {
            () = stay_connected(&control, shared, &netmaps, &mut punches) => {}
            () = stopped(shared) => {}
        }
    });
    // A name lookup still running on the runtime's blocking pool (a dead name server) must not
    // hold up the agent's shutdown.
    runtime.shutdown_background();
}

async fn stopped(shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(STOP_POLL).await;
    }
}

/// Updates the status entry of controller `index`.
fn set_state(shared: &Shared, index: usize, connected: bool, error: Option<String>) {
    if let Some(state) = shared.info().controllers.get_mut(index) {
        state.connected = connected;
        if error.is_some() || connected {
            state.last_error = error;
        }
    }
}

async fn stay_connected(
    control: &Control,
    shared: &Shared,
    netmaps: &Sender<Request>,
    punches: &mut AsyncReceiver<String>,
) {
    let mut backoff = Backoff::default();
    let mut index = 0;
    loop {
        let Some(controller) = control.controllers.get(index) else {
            return;
        };
        let epoch = shared.mesh().spec().source.epoch();
        let mut random = [0u8; 4];
        let _ = getrandom::fill(&mut random);
        let random = u32::from_ne_bytes(random);
        let wait = match enroll(control, controller, None, epoch).await {
            Ok(enrolled) => {
                tracing::info!(controller = %controller.name, "connected to the controller");
                set_state(shared, index, true, None);
                let since = tokio::time::Instant::now();
                let why = follow(enrolled, shared, netmaps, punches).await;
                tracing::warn!(controller = %controller.name, "controller connection lost: {why}");
                set_state(shared, index, false, Some(why));
                // Only a session that lasted starts the backoff afresh: a controller that
                // accepts and drops agents at once must not draw the fleet back every 0.5 s.
                if since.elapsed() >= Backoff::MAX {
                    backoff.reset();
                }
                backoff.next(random)
            }
            Err(e) => {
                tracing::warn!(controller = %controller.name, "cannot enroll: {e:#}");
                set_state(shared, index, false, Some(format!("{e:#}")));
                if is_refusal(&e) {
                    jittered(AFTER_REFUSAL, random)
                } else {
                    backoff.next(random)
                }
            }
        };
        index = (index + 1) % control.controllers.len();
        tokio::time::sleep(wait).await;
    }
}

/// Passes the netmap of the enrollment and every pushed one on, and the controller's punches to
/// the mesh; sends the mesh's punch requests and this machine's LAN addresses (when they
/// change) to the controller; until the session ends. Returns why it ended.
async fn follow(
    enrolled: Enrolled,
    shared: &Shared,
    netmaps: &Sender<Request>,
    punches: &mut AsyncReceiver<String>,
) -> String {
    let mut session = enrolled.session;
    if netmaps.send(Request::Netmap(enrolled.netmap)).is_err() {
        return "the agent is stopping".into();
    }
    // Requests from before this session are stale.
    while punches.try_recv().is_ok() {}
    let mut reports = tokio::time::interval(REPORT_CHECK);
    let mut reported: Option<(Vec<String>, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            push = session.next_push() => match push {
                Ok(Push::Netmap(netmap)) => {
                    if netmaps.send(Request::Netmap(netmap)).is_err() {
                        return "the agent is stopping".into();
                    }
                }
                Ok(Push::Punch(peer)) => shared.mesh().punch(&peer),
                Ok(Push::Error(why)) => tracing::warn!("the controller says: {why}"),
                Err(e) => return e.to_string(),
            },
            Some(peer) = punches.recv() => {
                if let Err(e) = session.punch(peer).await {
                    return e.to_string();
                }
            }
            _ = reports.tick() => {
                let lan = lan_endpoints(shared);
                let due = match &reported {
                    Some((last, at)) => *last != lan && at.elapsed() >= REPORT_EVERY,
                    None => true,
                };
                if due {
                    if let Err(e) = session.report_endpoints(lan.clone()).await {
                        return e.to_string();
                    }
                    reported = Some((lan, tokio::time::Instant::now()));
                }
            }
        }
    }
}

/// This machine's LAN addresses with the WireGuard port: its candidates of kind local (none while
/// the port is not known).
fn lan_endpoints(shared: &Shared) -> Vec<String> {
    let port = shared
        .udp
        .local_port()
        .unwrap_or_else(|_| shared.info().listen_port);
    if port == 0 {
        return Vec::new();
    }
    shared
        .info()
        .lan
        .iter()
        .take(MAX_ENDPOINTS)
        .map(|ip| SocketAddr::new(*ip, port).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let mid = 250; // exactly the base
        let waits: Vec<Duration> = (0..6).map(|_| b.next(mid)).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 5000, 5000].map(Duration::from_millis)
        );
        b.reset();
        assert_eq!(b.next(0), Duration::from_millis(375));
        assert_eq!(b.next(500), Duration::from_millis(1250));
        for random in [0, 1, 499, 500, u32::MAX] {
            let wait = Backoff { failures: 40 }.next(random);
            assert!(wait >= Duration::from_millis(3750) && wait <= Duration::from_millis(6250));
        }
    }

    #[test]
    fn only_controllers_with_a_pinned_key_are_contacted() {
        let text = include_str!("../../../wiremesh-core/tests/agent-config.json");
        let mut config = AgentConfig::from_json(text).unwrap();
        let pinned = controllers(&config);
        assert_eq!(pinned.len(), 1);
        assert_eq!(pinned[0].name, "server");
        config.controllers[0].node_public_key = None;
        assert!(controllers(&config).is_empty());
    }
}
