//! Resolves a Clan inventory into "which machine holds which role of which instance, with which
//! final settings", following Clan's own semantics, without Nix. The input is the inventory as JSON
//! (Clan's `inventory.json` shape) plus the role interfaces of the modules it uses: wiremesh's own
//! module is built in ([`builtin`]), every other clan service comes from a [`Catalog`]. Resolution
//! is a pure function: no I/O, no clock, the same output for the same input whatever its key order.
//!
//! Semantics (Clan's, see `research/clan-inventory.md` §1-2): effective tags are a machine's own
//! tags, the static `tags.<t>` lists naming it, `all` and its class; role members are the explicit
//! machines plus the carriers of each listed tag, deduplicated and sorted; a member's settings merge
//! the interface defaults, the role's settings, its machine settings and the settings of each role
//! tag it carries, with the module system's rules (objects merge, lists concatenate, scalars must
//! agree unless an override priority decides). Unlike Clan, every settings layer is validated
//! eagerly, also those no member reads.

pub mod builtin;
mod canonical;
pub mod catalog;
mod error;
pub mod format;
mod inventory;
mod lookup;
mod module;
mod path;
mod resolution;
mod resolve;
mod settings;
mod shape;
mod suggest;
mod tags;

pub use catalog::Catalog;
pub use error::{ErrorKind, ResolveError, Warning};
pub use module::{
    Constraints, EnumValues, Manifest, Module, OptionDecl, RoleConstraints, RoleInterface, Type,
};
pub use resolution::{MachineRole, ModuleRef, Resolution, ResolvedInstance, ResolvedRole};
pub use resolve::{resolve, resolve_value};

pub use canonical::to_compact as json_compact;

/// The largest inventory text [`resolve`] accepts (64 MiB); a 10,000-machine inventory is a few MB.
pub const MAX_INPUT_BYTES: usize = 64 << 20;

/// The most (instance, role, machine) results [`resolve`] produces. A few kilobytes of instances
/// tagging `all` multiply with the machines; this bounds the memory a small input can claim (each
/// result holds its merged settings). The benchmark inventory (10,000 machines) has about 97,000.
pub const MAX_RESULTS: usize = 1_000_000;

/// How to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOptions {
    /// Resolve only instances whose `module.name` is in this list; ignore all others. Empty means
    /// every instance.
    pub only: Vec<String>,
    /// The `module.input` under which the built-in wiremesh module is found (`"wiremesh"`).
    pub wiremesh_input: String,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            only: Vec::new(),
            wiremesh_input: builtin::DEFAULT_INPUT.to_string(),
        }
    }
}
