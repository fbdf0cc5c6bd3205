//! The lab bench under `wiremesh demo` and the root end-to-end tests (netns-tests): running a short
//! command with a time bound (its output in anonymous temp files, it and its children killed when
//! the bound passes or when the caller asks to stop), and managing throwaway network namespaces: listing them, finding
//! those a killed run left behind, and deleting one (with its /etc/netns/<name>) after stopping
//! what still runs in it. Both users name their namespaces `<prefix><pid>-…`, which is how orphans
//! are recognised. Policy (names, which commands, what to print) stays with the callers.

mod command;
mod netns;
mod process;

pub use command::{Output, run_bounded, run_bounded_until};
pub use netns::{delete_namespace, namespaces, orphaned_namespaces};
