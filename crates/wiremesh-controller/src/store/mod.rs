//! Where decisions are kept: the [`Store`] interface, an in-memory store for tests and simulations
//! ([`MemoryStore`]) and the SQLite store the daemon uses ([`SqliteStore`]).

mod memory;
mod sqlite;

use std::path::PathBuf;

pub use memory::MemoryStore;
pub use sqlite::{SCHEMA_VERSION, STORE_FILE, SqliteStore};

use crate::state::{Change, State};

/// A durable home for the controller's [`State`].
pub trait Store {
    /// Everything committed so far.
    fn load(&mut self) -> Result<State, StoreError>;
    /// Commits a batch of changes all or nothing; when this returns `Ok` the changes survive a
    /// crash. The controller checks each batch against its state before committing it.
    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError>;
}

/// Why a store cannot be used. Errors name the store's file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(
        "store {}: {detail}. The controller will not start on it, since it could hand out addresses twice: restore the file from a backup, or move it away to start with no leases",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "store {}: schema version {found}, but this build knows only version {SCHEMA_VERSION}",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, found: i64 },
    #[error("store {}: {detail}", path.display())]
    Failed { path: PathBuf, detail: String },
}
