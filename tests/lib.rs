//! Shared helpers for the workspace integration tests: where the example files and built binaries are.
