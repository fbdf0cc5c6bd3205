//! systemd readiness: the agent and the controller share one implementation.

pub use wiremesh_proto::sd_notify::notify;
