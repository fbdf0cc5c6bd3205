//! Effective tags, the input of Clan's `resolveTags`: a machine's own tags, the static `tags.<t>`
//! lists naming it and the computed `all`, `nixos` and `darwin`; and each tag's carriers.

use std::collections::{BTreeMap, BTreeSet};

use crate::inventory::Inventory;

/// Effective tags: each machine's sorted tags, and each tag's sorted carriers.
pub(crate) struct Tags<'v> {
    pub of_machine: BTreeMap<&'v str, BTreeSet<&'v str>>,
    pub carriers: BTreeMap<&'v str, Vec<&'v str>>,
}

impl<'v> Tags<'v> {
    pub(crate) fn compute(inv: &Inventory<'v>) -> Tags<'v> {
        let mut of_machine: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (&name, machine) in &inv.machines {
            let mut tags: BTreeSet<&str> = machine.tags.iter().copied().collect();
            // `all`, `nixos` and `darwin` are Clan's mkDefault tags: a static `tags.<t>` replaces them.
            if !inv.tags.contains_key("all") {
                tags.insert("all");
            }
            if !inv.tags.contains_key(machine.class) {
                tags.insert(machine.class);
            }
            of_machine.insert(name, tags);
        }
        for (&tag, members) in &inv.tags {
            for member in members {
                // A static tag naming a machine that does not exist tags nothing, as in Clan.
                if let Some(tags) = of_machine.get_mut(member) {
                    tags.insert(tag);
                }
            }
        }
        let mut carriers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (&machine, tags) in &of_machine {
            for &tag in tags {
                carriers.entry(tag).or_default().push(machine);
            }
        }
        Tags {
            of_machine,
            carriers,
        }
    }
}
