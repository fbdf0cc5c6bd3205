//! Helpers shared by the rule tests: the clan-core fixture catalog plus a `self` input with a
//! small module that exercises every type.

// Each test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

use serde_json::{Value, json};
use wiremesh_inventory::{Catalog, Resolution, ResolveError, ResolveOptions, resolve};

pub const CLAN_CORE_MODULES: &str =
    include_str!("../../../../tests/fixtures/inventory/clan-core-modules.json");

/// The fixture catalog plus `self/wifi` (attrsOf submodule, enum, lists) and `self/single`
/// (maxInstances 1).
pub fn catalog() -> Catalog {
    let mut value: Value = serde_json::from_str(CLAN_CORE_MODULES).unwrap();
    value["self"] = json!({
        "wifi": {
            "manifest": { "name": "self/wifi" },
            "roles": {
                "default": {
                    "interface": {
                        "networks": {
                            "type": { "type": "attrsOf", "of": { "type": "submodule", "options": {
                                "ssid": { "type": { "type": "str" } },
                                "autoConnect": { "type": { "type": "bool" }, "default": true }
                            } } },
                            "default": {}
                        },
                        "band": { "type": { "type": "enum", "values": ["2.4", "5", null] }, "default": null },
                        "dns": { "type": { "type": "listOf", "of": { "type": "str" } }, "default": ["198.18.0.53"] },
                        "priority": { "type": { "type": "int" }, "default": 0 }
                    }
                }
            }
        },
        "single": {
            "manifest": { "name": "self/single", "constraints": { "maxInstances": 1 } },
            "roles": { "default": {} }
        }
    });
    Catalog::from_value(&value).unwrap()
}

pub fn run(inventory: &Value) -> Result<Resolution, ResolveError> {
    run_with(inventory, &ResolveOptions::default())
}

pub fn run_with(inventory: &Value, opts: &ResolveOptions) -> Result<Resolution, ResolveError> {
    resolve(&inventory.to_string(), &catalog(), opts)
}

pub fn ok(inventory: Value) -> Resolution {
    match run(&inventory) {
        Ok(r) => r,
        Err(e) => panic!("expected success, got {e}\n{}", e.message),
    }
}

pub fn err(inventory: Value) -> ResolveError {
    match run(&inventory) {
        Ok(r) => panic!("expected an error, got {}", r.to_json_pretty()),
        Err(e) => e,
    }
}

/// The settings of `machine` in (`instance`, `role`).
pub fn settings(r: &Resolution, machine: &str, instance: &str, role: &str) -> Value {
    r.roles_of(machine)
        .iter()
        .find(|e| e.instance == instance && e.role == role)
        .map(|e| e.settings.clone())
        .unwrap_or_else(|| panic!("{machine} has no role {role} in {instance}"))
}

pub fn members(r: &Resolution, instance: &str, role: &str) -> Vec<String> {
    r.instances[instance].roles[role].machines.clone()
}

/// Three machines and a wiremesh instance whose layers the caller fills in.
pub fn wiremesh(roles: Value) -> Value {
    json!({
        "machines": {
            "server": {},
            "laptop": { "tags": ["laptop", "mobile"] },
            "desktop": { "tags": ["office"] }
        },
        "instances": {
            "vpn": { "module": { "name": "wiremesh", "input": "wiremesh" }, "roles": roles }
        }
    })
}
