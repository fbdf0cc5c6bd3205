//! What the wiremesh controller, the agent and the CLIs share beyond the core's messages: the
//! controller's admin protocol (requests, status report and a bounded std client), systemd
//! readiness, and with the `quic` feature the control channel: mutual TLS from node keys, framed
//! messages on QUIC streams and the client the agent enrolls with.

pub mod admin;
#[cfg(feature = "quic")]
pub mod client;
pub mod sd_notify;
#[cfg(feature = "quic")]
pub mod tls;
#[cfg(feature = "quic")]
pub mod wire;
