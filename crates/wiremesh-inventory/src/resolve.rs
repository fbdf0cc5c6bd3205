//! The resolution itself: modules, role members, constraints, then every member's settings.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::ResolveOptions;
use crate::catalog::Catalog;
use crate::error::{ErrorKind, ResolveError, Warning};
use crate::inventory::{self, Inventory, ModuleSpec, RoleSpec};
use crate::lookup::find_module;
use crate::module::Module;
use crate::path::{Path, attr_path};
use crate::resolution::{MachineRole, ModuleRef, Resolution, ResolvedInstance, ResolvedRole};
use crate::settings::{self, Def, Member, Origin, Site};
use crate::suggest;
use crate::tags::Tags;

/// Resolves an inventory (JSON text) against the built-in wiremesh module and `catalog`.
pub fn resolve(
    inventory: &str,
    catalog: &Catalog,
    opts: &ResolveOptions,
) -> Result<Resolution, ResolveError> {
    let value = inventory::parse_json(inventory, ErrorKind::InvalidJson)?;
    resolve_value(&value, catalog, opts)
}

/// Resolves an inventory already parsed into a JSON value.
pub fn resolve_value(
    value: &Value,
    catalog: &Catalog,
    opts: &ResolveOptions,
) -> Result<Resolution, ResolveError> {
    let inv = inventory::parse_inventory(value)?;
    let tags = Tags::compute(&inv);

    let root = Path::ROOT;
    let at_instances = root.key("instances");
    let mut selected: Vec<(&str, &Value, ModuleSpec, &Module)> = Vec::new();
    for (&name, &spec) in &inv.instances {
        let at = at_instances.key(name);
        let module_spec = inventory::parse_module_spec(name, spec, &at)?;
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o == module_spec.name) {
            continue;
        }
        let module = find_module(&module_spec, catalog, opts, &at)?;
        selected.push((name, spec, module_spec, module));
    }
    check_max_instances(&selected)?;

    let mut resolution = Resolution {
        instances: BTreeMap::new(),
        machines: inv
            .machines
            .keys()
            .map(|m| (m.to_string(), Vec::new()))
            .collect(),
        machine_tags: tags
            .of_machine
            .iter()
            .map(|(m, t)| (m.to_string(), t.iter().map(|s| s.to_string()).collect()))
            .collect(),
        warnings: Vec::new(),
    };
    // Members of every instance first: their number is the work of merging settings, which is
    // refused before it starts when it would exceed MAX_RESULTS. Other errors still come in
    // instance order: a membership error waits until the instances before it are settled.
    let mut planned = Vec::with_capacity(selected.len());
    let mut pending = Ok(());
    let mut results = 0;
    for (name, spec, module_spec, module) in selected {
        let instance = Instance {
            name,
            module,
            module_ref: ModuleRef {
                input: module_spec.input.map(str::to_string),
                name: module_spec.name.to_string(),
            },
            inv: &inv,
            tags: &tags,
        };
        let membership = match instance.membership(spec, &mut resolution.warnings) {
            Ok(membership) => membership,
            Err(e) => {
                pending = Err(e);
                break;
            }
        };
        for (role, members) in &membership.members_of {
            results += members.len();
            if results > crate::MAX_RESULTS {
                return Err(instance.too_many_results(role, results));
            }
        }
        planned.push((instance, membership));
    }
    for (instance, membership) in planned {
        let resolved = instance.resolve(&membership, &mut resolution)?;
        resolution
            .instances
            .insert(instance.name.to_string(), resolved);
    }
    pending.map(|()| resolution)
}

/// `manifest.constraints.maxInstances`, counted per Clan service group (input, name): the same
/// module reached through two inputs is two evaluations in Clan.
fn check_max_instances(
    selected: &[(&str, &Value, ModuleSpec, &Module)],
) -> Result<(), ResolveError> {
    let mut groups: BTreeMap<(Option<&str>, &str), Vec<&str>> = BTreeMap::new();
    for (name, _, spec, _) in selected {
        groups
            .entry((spec.input, spec.name))
            .or_default()
            .push(name);
    }
    for (name, _, spec, module) in selected {
        let members = &groups[&(spec.input, spec.name)];
        if let Some(max) = module.manifest.constraints.max_instances
            && members.len() as u64 > max
            && members.get(max as usize) == Some(name)
        {
            return Err(ResolveError::new(
                ErrorKind::ConstraintViolation,
                attr_path(&["instances", name]),
                format!(
                    "Service '{}' allows at most {max} instance(s) but {} are defined: {}.",
                    module.manifest.name,
                    members.len(),
                    suggest::list(members.iter().copied())
                ),
            ));
        }
    }
    Ok(())
}

struct Instance<'a, 'v> {
    name: &'v str,
    module: &'a Module,
    module_ref: ModuleRef,
    inv: &'a Inventory<'v>,
    tags: &'a Tags<'v>,
}

/// An instance's roles and their members, before any settings are merged.
struct Membership<'v> {
    roles: BTreeMap<&'v str, RoleSpec<'v>>,
    members_of: BTreeMap<&'v str, Vec<&'v str>>,
}

impl<'v> Instance<'_, 'v> {
    /// Parses the roles, checks them against the module, finds their members (warning about
    /// tags nobody carries) and checks the role constraints.
    fn membership(
        &self,
        spec: &'v Value,
        warnings: &mut Vec<Warning>,
    ) -> Result<Membership<'v>, ResolveError> {
        let at_instance = Path::ROOT.key("instances");
        let at = at_instance.key(self.name);
        let roles = inventory::parse_roles(spec, &at)?;
        self.check_roles_known(&roles)?;

        let mut members_of = BTreeMap::new();
        for (&role, role_spec) in &roles {
            members_of.insert(role, self.members(role, role_spec, warnings)?);
        }
        self.check_role_constraints(&members_of)?;
        Ok(Membership { roles, members_of })
    }

    /// Checks every settings layer and merges every member's settings into `out.machines`.
    fn resolve(
        &self,
        membership: &Membership<'v>,
        out: &mut Resolution,
    ) -> Result<ResolvedInstance, ResolveError> {
        let mut resolved = ResolvedInstance {
            module: self.module_ref.clone(),
            roles: BTreeMap::new(),
        };
        for (&role, role_spec) in &membership.roles {
            let members = &membership.members_of[role];
            self.validate_layers(role, role_spec)?;
            self.settle(role, role_spec, members, out)?;
            resolved.roles.insert(
                role.to_string(),
                ResolvedRole {
                    machines: members.iter().map(|m| m.to_string()).collect(),
                },
            );
        }
        Ok(resolved)
    }

    fn too_many_results(&self, role: &str, results: usize) -> ResolveError {
        ResolveError::new(
            ErrorKind::InputTooLarge,
            attr_path(&["instances", self.name, "roles", role]),
            format!(
                "Instance '{}', role '{role}' brings the number of (instance, role, machine) results to {results}; at most {} are resolved.",
                self.name,
                crate::MAX_RESULTS
            ),
        )
    }

    fn check_roles_known(&self, roles: &BTreeMap<&str, RoleSpec>) -> Result<(), ResolveError> {
        let unknown: Vec<&str> = roles
            .keys()
            .copied()
            .filter(|r| !self.module.roles.contains_key(*r))
            .collect();
        let Some(first) = unknown.first() else {
            return Ok(());
        };
        let defined = self.module.role_names();
        Err(ResolveError::new(
            ErrorKind::UnknownRole,
            attr_path(&["instances", self.name, "roles", first]),
            format!(
                "Instance: 'instances.{}' uses the following roles:\n{}\n\nBut the clan-service module '{}' only defines roles:\n{}\n{}",
                self.name,
                suggest::list(unknown.iter().copied()),
                self.module.manifest.name,
                suggest::list(defined.iter().copied()),
                suggest::hint(first, defined.iter().copied()).trim_start()
            )
            .trim_end()
            .to_string(),
        ))
    }

    /// Explicit machines plus the carriers of each listed tag, deduplicated and sorted bytewise.
    fn members(
        &self,
        role: &str,
        spec: &RoleSpec<'v>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Vec<&'v str>, ResolveError> {
        let mut members: Vec<&'v str> = Vec::new();
        for &machine in spec.machines.keys() {
            if !self.inv.machines.contains_key(machine) {
                return Err(self.unknown_machine(role, machine));
            }
            members.push(machine);
        }
        for &tag in spec.tags.keys() {
            match self.tags.carriers.get(tag) {
                Some(carriers) => members.extend(carriers.iter().copied()),
                None => warnings.push(Warning::EmptyTag {
                    instance: self.name.to_string(),
                    role: role.to_string(),
                    tag: tag.to_string(),
                }),
            }
        }
        members.sort_unstable();
        members.dedup();
        Ok(members)
    }

    fn unknown_machine(&self, role: &str, machine: &str) -> ResolveError {
        let known = self.inv.machines.keys().copied();
        const SHOWN: usize = 20;
        let count = self.inv.machines.len();
        let listed = suggest::list(self.inv.machines.keys().copied().take(SHOWN));
        let more = if count > SHOWN {
            format!(" and {} more", count - SHOWN)
        } else {
            String::new()
        };
        ResolveError::new(
            ErrorKind::UnknownMachine,
            attr_path(&["instances", self.name, "roles", role, "machines", machine]),
            format!(
                "Instance '{}', role '{role}': unknown machine reference '{machine}': it is not in `machines`.{} Use one of {listed}{more}.",
                self.name,
                suggest::hint(machine, known)
            ),
        )
    }

    fn check_role_constraints(
        &self,
        members_of: &BTreeMap<&str, Vec<&str>>,
    ) -> Result<(), ResolveError> {
        for (role, c) in &self.module.manifest.constraints.roles {
            let assigned = members_of.get(role.as_str()).map_or(0, Vec::len) as u64;
            let service = &self.module.manifest.name;
            let path = attr_path(&["instances", self.name, "roles", role]);
            if let Some(min) = c.min_machines
                && assigned < min
            {
                return Err(ResolveError::new(
                    ErrorKind::ConstraintViolation,
                    path,
                    format!(
                        "Role '{role}' of service '{service}' instance '{}' requires at least {min} machine(s) but {assigned} are assigned.",
                        self.name
                    ),
                ));
            }
            if let Some(max) = c.max_machines
                && assigned > max
            {
                return Err(ResolveError::new(
                    ErrorKind::ConstraintViolation,
                    path,
                    format!(
                        "Role '{role}' of service '{service}' instance '{}' allows at most {max} machine(s) but {assigned} are assigned.",
                        self.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks every settings layer of a role once, including layers no member reads.
    fn validate_layers(&self, role: &str, spec: &RoleSpec<'v>) -> Result<(), ResolveError> {
        let options = &self.module.roles[role].options;
        let interface = format!("role '{role}' of module '{}'", self.module.manifest.name);
        let check = |value: &Value, location: &[&str]| {
            let base = ["instances", self.name, "roles", role];
            let prefix = attr_path(&[&base[..], location].concat());
            let site = Site {
                prefix: &prefix,
                origin: &prefix,
                interface: &interface,
                overrides_allowed: true,
            };
            settings::validate_layer(options, value, &site)
        };
        if let Some(value) = spec.settings {
            check(value, &["settings"])?;
        }
        for (machine, value) in &spec.machines {
            if let Some(value) = value {
                check(value, &["machines", machine, "settings"])?;
            }
        }
        for (tag, value) in &spec.tags {
            if let Some(value) = value {
                check(value, &["tags", tag, "settings"])?;
            }
        }
        Ok(())
    }

    /// Merges the layers of every member and appends the results to `out.machines`. Members with
    /// no machine settings of their own share one merge per set of carried tag layers.
    fn settle(
        &self,
        role: &str,
        spec: &RoleSpec<'v>,
        members: &[&str],
        out: &mut Resolution,
    ) -> Result<(), ResolveError> {
        let options = &self.module.roles[role].options;
        let tag_layers: Vec<(&str, &Value)> = spec
            .tags
            .iter()
            .filter_map(|(t, v)| v.map(|v| (*t, v)))
            .collect();
        let mut shared: HashMap<Vec<usize>, Value> = HashMap::new();
        let mut defs: Vec<Def> = Vec::with_capacity(tag_layers.len() + 2);
        for &machine in members {
            let carried = &self.tags.of_machine[machine];
            // Walk the smaller of the two sorted sets, so that thousands of tags on a role or on
            // a machine cost what writing them cost, not their product over every member.
            let tag_indices: Vec<usize> = if carried.len() < tag_layers.len() {
                carried
                    .iter()
                    .filter_map(|t| tag_layers.binary_search_by(|(l, _)| l.cmp(t)).ok())
                    .collect()
            } else {
                tag_layers
                    .iter()
                    .enumerate()
                    .filter(|(_, (t, _))| carried.contains(t))
                    .map(|(i, _)| i)
                    .collect()
            };
            let own = spec.machines.get(machine).copied().flatten();
            let cached = if own.is_none() {
                shared.get(&tag_indices)
            } else {
                None
            };
            let settings = match cached {
                Some(value) => value.clone(),
                None => {
                    defs.clear();
                    if let Some(value) = spec.settings {
                        defs.push(Def {
                            value,
                            origin: Origin::Role,
                        });
                    }
                    if let Some(value) = own {
                        defs.push(Def {
                            value,
                            origin: Origin::Machine,
                        });
                    }
                    for &i in &tag_indices {
                        let (tag, value) = tag_layers[i];
                        defs.push(Def {
                            value,
                            origin: Origin::Tag(tag),
                        });
                    }
                    let member = Member {
                        instance: self.name,
                        role,
                        machine,
                        module: &self.module.manifest.name,
                    };
                    let value = settings::merge_settings(options, &defs, &member)?;
                    if own.is_none() {
                        shared.insert(tag_indices, value.clone());
                    }
                    value
                }
            };
            if let Some(entries) = out.machines.get_mut(machine) {
                entries.push(MachineRole {
                    instance: self.name.to_string(),
                    module: self.module_ref.clone(),
                    role: role.to_string(),
                    settings,
                });
            }
        }
        Ok(())
    }
}
