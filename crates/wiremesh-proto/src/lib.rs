//! What the wiremesh controller, the agent and the CLIs share beyond the core's messages: the
//! controller's admin protocol (requests, status report and a bounded std client), the agent's
//! local status protocol ([`status`], served by the agent, read by `wiremesh status`), systemd
//! readiness, and the control channel: mutual TLS from node keys, framed messages on QUIC streams
//! and the client the agent enrolls with.

pub mod admin;
pub mod client;
pub mod sd_notify;
pub mod status;
pub mod tls;
pub mod wire;
