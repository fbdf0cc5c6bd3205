//! The core thread: the one owner of the [`Controller`]. Connections, the admin socket and the
//! relay thread send it commands; it runs them in order (SQLite commits included, off the async
//! runtime) and routes the outputs to the sessions' outboxes. Whenever the netmap's members
//! change, it hands them to the relay.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc as tokio_mpsc, oneshot};
use wiremesh_core::controller_config::ControllerFile;
use wiremesh_core::keys::{NodePublicKey, NodeSecret, WireguardSecret};
use wiremesh_core::messages::{ErrorCode, Message, NetmapPush};
use wiremesh_proto::admin::{ADMIN_VERSION, Outcome, Request, Response};
use wiremesh_proto::wire::shared_frame;

use super::Clock;
use super::relay::{lock, mono_now};
use crate::relay::{BindingChange, Limits, Relay};
use crate::{ConfigDiff, Controller, Output, SessionId, SqliteStore};

/// How often the netmap's expiry is checked.
const TICK: Duration = Duration::from_secs(30);
/// The shortest time between two rounds of netmap pushes: changes that come faster (a fleet
/// enrolling at once) are merged into one push of the newest netmap. Also the longest a batch
/// of commands runs.
const PUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A round of pushes is followed by a pause of its bytes at this rate (at least
/// [`PUSH_INTERVAL`], at most [`MAX_PUSH_PAUSE`]): a fleet's enrollment storm would otherwise
/// spend the controller's CPU on netmaps every agent replaces a moment later.
const PUSH_BYTES_PER_SECOND: f64 = 50e6;
const MAX_PUSH_PAUSE: Duration = Duration::from_secs(1);
/// Messages queued for one session before it counts as stuck and is dropped.
pub const OUTBOX: usize = 64;

/// What a session's writer does next.
#[derive(Debug)]
pub enum Outgoing {
    Message(Message),
    /// An encoded frame shared with other sessions (a netmap push).
    Frame(Bytes),
    /// Finish the stream and close the connection.
    Close,
}

pub enum Command {
    Connect {
        peer: NodePublicKey,
        remote: String,
        nonce: [u8; 32],
        outbox: tokio_mpsc::Sender<Outgoing>,
        reply: oneshot::Sender<SessionId>,
    },
    Receive {
        id: SessionId,
        payload: Vec<u8>,
    },
    Reject {
        id: SessionId,
        code: ErrorCode,
        message: String,
    },
    Disconnect {
        id: SessionId,
    },
    /// The agent's packets (QUIC keepalives included) still arrive.
    Alive {
        id: SessionId,
    },
    Admin {
        request: Request,
        reply: oneshot::Sender<Response>,
    },
    Reload {
        config: Box<ControllerFile>,
        reply: oneshot::Sender<Result<ConfigDiff, String>>,
    },
    /// The relay's bindings changed (members' `Mapped` candidates).
    Bindings {
        changes: Vec<BindingChange>,
    },
}

/// The relay as the core sees it: the state it shares with the relay thread and its port.
#[derive(Clone)]
pub struct RelayLink {
    pub relay: Arc<Mutex<Relay>>,
    /// The port it serves on.
    pub port: u16,
    /// The port the configuration asked for (`--relay-listen` may have overridden it).
    pub config_port: u16,
}

/// Sends commands to the core thread; cloned by every task.
#[derive(Clone)]
pub struct CoreHandle(mpsc::Sender<Command>);

impl CoreHandle {
    pub fn send(&self, command: Command) {
        // Fails only once the core thread is gone, when the daemon is stopping anyway.
        let _ = self.0.send(command);
    }

    /// Asks the core and waits for its answer; `None` if the core thread is gone.
    pub async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.send(command(reply));
        answer.await.ok()
    }
}

/// Starts the core thread; it ends when every handle is dropped.
pub fn spawn(
    controller: Controller<SqliteStore>,
    clock: Clock,
    relay: Option<RelayLink>,
) -> std::io::Result<(CoreHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("controller-core".into())
        .spawn(move || Core::new(controller, clock, relay).run(rx))?;
    Ok((CoreHandle(tx), thread))
}

struct Core {
    controller: Controller<SqliteStore>,
    outboxes: BTreeMap<SessionId, tokio_mpsc::Sender<Outgoing>>,
    /// Sessions due the current netmap: every netmap is the whole mesh, so a session that missed
    /// some epochs needs only the newest.
    pushes: BTreeSet<SessionId>,
    /// When pushes last went out, and how long the next round waits after it.
    last_push: Instant,
    push_pause: Duration,
    clock: Clock,
    relay: Option<RelayLink>,
    /// The epoch whose members the relay has.
    relay_epoch: Option<u64>,
}

impl Core {
    fn new(controller: Controller<SqliteStore>, clock: Clock, relay: Option<RelayLink>) -> Self {
        let mut core = Self {
            controller,
            outboxes: BTreeMap::new(),
            pushes: BTreeSet::new(),
            last_push: Instant::now(),
            push_pause: PUSH_INTERVAL,
            clock,
            relay,
            relay_epoch: None,
        };
        core.sync_relay();
        core
    }

    /// Gives the relay the members of a new epoch; the bindings of members that are gone end,
    /// and so do their `Mapped` candidates.
    fn sync_relay(&mut self) {
        let Some(link) = &self.relay else { return };
        let epoch = self.controller.epoch().map(|e| e.epoch);
        if epoch == self.relay_epoch {
            return;
        }
        self.relay_epoch = epoch;
        let members = self.controller.relay_members();
        let (clashes, changes) = {
            let mut relay = lock(&link.relay);
            let clashes = relay.set_members(members, mono_now());
            (clashes, relay.take_changes())
        };
        if !clashes.is_empty() {
            tracing::warn!(
                "relay: members {} have WireGuard keys that begin with the same 8 bytes, so the relay cannot tell them apart; it serves only the one that held the id already (else the oldest) and leaves these out",
                clashes.join(", ")
            );
        }
        if !changes.is_empty() {
            let outputs = self.controller.set_mapped(changes, self.clock.now());
            self.dispatch(outputs);
        }
    }

    fn run(mut self, commands: mpsc::Receiver<Command>) {
        let mut last_tick = Instant::now();
        loop {
            let wait = if self.pushes.is_empty() {
                TICK
            } else {
                self.push_pause.saturating_sub(self.last_push.elapsed())
            };
            match commands.recv_timeout(wait) {
                Ok(command) => {
                    // The commands that queued up meanwhile join it in one batch (one new epoch
                    // for a burst of enrollments), for at most PUSH_INTERVAL, so that a steady
                    // stream of commands holds neither the answers nor the pushes back.
                    let started = Instant::now();
                    self.controller.begin_batch();
                    self.handle(command);
                    while started.elapsed() < PUSH_INTERVAL
                        && let Ok(command) = commands.try_recv()
                    {
                        self.handle(command);
                    }
                    self.end_batch();
                    self.sync_relay();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            // A burst of epochs costs each agent one push of the last netmap.
            if self.last_push.elapsed() >= self.push_pause {
                self.flush();
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                let now = self.clock.now();
                match self.controller.tick(now) {
                    Ok(outputs) => self.dispatch(outputs),
                    Err(e) => tracing::error!("cannot renew the netmap: {e}"),
                }
                self.sync_relay();
                self.flush();
            }
        }
    }

    fn handle(&mut self, command: Command) {
        let now = self.clock.now();
        match command {
            Command::Connect {
                peer,
                remote,
                nonce,
                outbox,
                reply,
            } => {
                let (id, outputs) = self.controller.connect(peer, remote, nonce, now);
                self.outboxes.insert(id, outbox);
                let _ = reply.send(id);
                self.dispatch(outputs);
            }
            Command::Receive { id, payload } => {
                let outputs = self.controller.receive(id, &payload, now);
                self.dispatch(outputs);
            }
            Command::Reject { id, code, message } => {
                let outputs = self.controller.reject(id, code, message);
                self.dispatch(outputs);
            }
            Command::Alive { id } => self.controller.alive(id, self.clock.now()),
            Command::Disconnect { id } => {
                self.controller.disconnect(id);
                self.outboxes.remove(&id);
                self.pushes.remove(&id);
            }
            Command::Admin { request, reply } => {
                // An admin command acts on its own epoch, which its answer names.
                self.end_batch();
                let outcome = self.admin(request, now);
                // A revoked member is off the relay before the admin hears it is done.
                self.sync_relay();
                self.controller.begin_batch();
                let _ = reply.send(Response {
                    version: ADMIN_VERSION,
                    outcome,
                });
            }
            Command::Bindings { changes } => {
                let outputs = self.controller.set_mapped(changes, now);
                self.dispatch(outputs);
            }
            Command::Reload { config, reply } => {
                self.end_batch();
                let result = self.controller.reload(*config, now);
                self.sync_relay();
                self.controller.begin_batch();
                let answer = match result {
                    Ok((diff, outputs)) => {
                        self.dispatch(outputs);
                        self.reload_relay();
                        Ok(diff)
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// A reloaded configuration's relay limits apply at once; its port and `enable` only after
    /// a restart.
    fn reload_relay(&mut self) {
        let config = self.controller.config().relay;
        match &self.relay {
            Some(link) => {
                lock(&link.relay).set_limits(Limits::from_config(&config));
                if !config.enable || config.port != link.config_port {
                    tracing::warn!(
                        "the relay's new enable or port setting takes a restart of the controller"
                    );
                }
            }
            None if config.enable => {
                tracing::warn!("the relay's new enable setting takes a restart of the controller");
            }
            None => {}
        }
    }

    fn admin(&mut self, request: Request, now: u64) -> Outcome {
        let error = |message: String| Outcome::Error { message };
        match request {
            Request::Status => {
                let mut status = self.controller.status(now);
                status.relay = self
                    .relay
                    .as_ref()
                    .map(|link| lock(&link.relay).status(link.port, mono_now()));
                Outcome::Status(status)
            }
            Request::TokenCreate { name, ttl_seconds } => {
                let mut secret = [0u8; 32];
                if let Err(e) = getrandom::fill(&mut secret) {
                    return error(format!("no random numbers for the token: {e}"));
                }
                match self
                    .controller
                    .create_token(&name, ttl_seconds, secret, now)
                {
                    Ok((token, expires_at)) => {
                        tracing::info!("join token created for {name:?}, valid until {expires_at}");
                        Outcome::Token {
                            token,
                            name,
                            expires_at,
                        }
                    }
                    Err(e) => error(e.to_string()),
                }
            }
            Request::Revoke { name } => match self.controller.revoke(&name, now) {
                Ok(outputs) => {
                    self.dispatch(outputs);
                    tracing::info!("revoked {name:?}");
                    Outcome::Revoked {
                        epoch: self.epoch(),
                        name,
                    }
                }
                Err(e) => error(e.to_string()),
            },
            Request::DeviceAdd { name } => {
                let keys = WireguardSecret::generate()
                    .and_then(|wg| NodeSecret::generate().map(|node| (wg, node.public_key())));
                let (secret, node) = match keys {
                    Ok(keys) => keys,
                    Err(e) => {
                        return error(format!("no random numbers for the device's keys: {e}"));
                    }
                };
                match self.controller.add_device(&name, &secret, node, now) {
                    Ok((wg_quick, outputs)) => {
                        self.dispatch(outputs);
                        tracing::info!("device {name:?} added");
                        Outcome::Device {
                            epoch: self.epoch(),
                            name,
                            wg_quick,
                        }
                    }
                    Err(e) => error(e.to_string()),
                }
            }
        }
    }

    /// Ends the controller's batch and sends what it decided.
    fn end_batch(&mut self) {
        let outputs = self.controller.end_batch(self.clock.now());
        self.dispatch(outputs);
    }

    fn epoch(&self) -> u64 {
        self.controller.epoch().map_or(0, |e| e.epoch)
    }

    fn dispatch(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Push(id) => {
                    self.pushes.insert(id);
                }
                Output::Send(id, message) => self.send(id, Outgoing::Message(message)),
                Output::Close(id) => {
                    self.pushes.remove(&id);
                    if let Some(outbox) = self.outboxes.remove(&id) {
                        let _ = outbox.try_send(Outgoing::Close);
                    }
                }
                Output::Warn(text) => tracing::warn!("{text}"),
            }
        }
    }

    /// Sends the current netmap, encoded once, to every session due a push.
    fn flush(&mut self) {
        self.last_push = Instant::now();
        let pushes = std::mem::take(&mut self.pushes);
        let Some(record) = self.controller.epoch().filter(|_| !pushes.is_empty()) else {
            return;
        };
        let push = Message::NetmapPush(NetmapPush {
            netmap: record.netmap.clone(),
        });
        let frame = match shared_frame(&push) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::error!("cannot encode the netmap push: {e}");
                return;
            }
        };
        let bytes = frame.len() * pushes.len();
        self.push_pause = Duration::from_secs_f64(bytes as f64 / PUSH_BYTES_PER_SECOND)
            .clamp(PUSH_INTERVAL, MAX_PUSH_PAUSE);
        for id in pushes {
            self.send(id, Outgoing::Frame(frame.clone()));
        }
    }

    fn send(&mut self, id: SessionId, outgoing: Outgoing) {
        let full = match self.outboxes.get(&id) {
            Some(outbox) => outbox.try_send(outgoing).is_err(),
            None => false,
        };
        if full {
            // A session that does not read its pushes is dropped, not waited for.
            tracing::warn!("session {id} does not keep up with its pushes; closing it");
            self.controller.disconnect(id);
            self.outboxes.remove(&id);
        }
    }
}
