//! The trust and addressing core shared by the controller, the agent and the CLI: keys and
//! identity files, overlay address derivation, the agent and controller configuration schemas,
//! the mesh plan (resolved inventory + public keys → one agent configuration per machine), the
//! signed network map, and the control-plane messages with their framing. Everything here is a
//! pure function of its inputs (time is passed in); the only I/O is in the thin key-file helpers
//! (`load(path)`, `permission_warning(path)`) and the size-limited file reader in `files`.

pub mod addresses;
mod bounded;
pub mod claims;
pub mod config;
pub mod controller_config;
pub mod disco;
pub mod files;
pub mod frame;
pub mod keys;
pub mod messages;
pub mod netmap;
pub mod plan;
pub mod ticket;
