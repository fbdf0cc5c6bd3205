//! A store in memory: the state machine's tests and simulations run against it.

use super::{Store, StoreError};
use crate::state::{Change, State};

/// Keeps the state in memory; can be told to fail its next commits, as a full disk would.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: State,
    failing: bool,
    commits: usize,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later commit fail (or succeed again).
    pub fn set_failing(&mut self, failing: bool) {
        self.failing = failing;
    }

    /// The state as committed.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// How many batches were committed.
    pub fn commits(&self) -> usize {
        self.commits
    }
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<State, StoreError> {
        Ok(self.state.clone())
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        let fail = |detail: String| StoreError::Failed {
            path: "<memory>".into(),
            detail,
        };
        if self.failing {
            return Err(fail("commit failed (simulated)".into()));
        }
        self.state
            .apply_all(changes)
            .map_err(|e| fail(e.to_string()))?;
        self.commits += 1;
        Ok(())
    }
}
