//! Property: resolution is deterministic and does not depend on the key order of the JSON text.
//! Random inventories (machines, static and own tags, wiremesh / wireguard / self modules, roles
//! with explicit machines, tag lists and tag objects, settings from a pool that also holds
//! conflicting and invalid values) are written out twice with object keys in different random
//! orders; both texts must give the same result, success or error, byte for byte.

mod common;

use common::catalog;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use wiremesh_inventory::{ResolveOptions, resolve};

const MACHINES: [&str; 7] = ["a", "B", "c-1", "d", "e", "f", "zz"];
const TAGS: [&str; 4] = ["t1", "t2", "t3", "ghost"];

fn peer_settings() -> Vec<Value> {
    vec![
        json!({}),
        json!({ "mtu": 1300 }),
        json!({ "mtu": 1400 }),
        json!({ "routes": ["100.100.0.0/24"] }),
        json!({ "routes": ["100.100.1.0/24", "100.100.2.0/24"] }),
        json!({ "port": { "_type": "override", "priority": 50, "content": 51999 } }),
        json!({ "endpoints": ["198.18.0.1:51820"], "ipRanges": ["all"] }),
        json!({ "persistentKeepalive": null }),
        json!({ "mtu": "oops" }),
    ]
}

fn controller_settings() -> Vec<Value> {
    vec![
        json!({}),
        json!({ "endpoint": "vpn.example.org" }),
        json!({ "dynamicIp": { "enable": true } }),
        json!({ "dynamicIp": { "range": "100.77.0.0/16" }, "ipv4Network": "100.77.0.0/16" }),
        json!({ "controlPort": 1 }),
    ]
}

/// Picks from `pool` with `bits`, one bit per element.
fn subset<'a>(pool: &[&'a str], bits: u32) -> Vec<&'a str> {
    pool.iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, s)| *s)
        .collect()
}

#[derive(Debug, Clone)]
struct RoleGen {
    machines: u32,
    machine_settings: Vec<usize>,
    tags: u32,
    tags_as_object: bool,
    tag_settings: Vec<usize>,
    settings: Option<usize>,
}

fn role_gen() -> impl Strategy<Value = RoleGen> {
    (
        any::<u32>(),
        proptest::collection::vec(0usize..16, 7),
        any::<u32>(),
        any::<bool>(),
        proptest::collection::vec(0usize..16, 4),
        proptest::option::of(0usize..16),
    )
        .prop_map(
            |(machines, machine_settings, tags, tags_as_object, tag_settings, settings)| RoleGen {
                machines: machines & 0x7f,
                machine_settings,
                tags: tags & 0xf,
                tags_as_object,
                tag_settings,
                settings,
            },
        )
}

fn role_value(g: &RoleGen, pool: &[Value], machines: &[&str]) -> Value {
    let pick = |i: usize| pool.get(i).cloned();
    let mut role = Map::new();
    let mut ms = Map::new();
    for (i, m) in subset(machines, g.machines).into_iter().enumerate() {
        let entry = match pick(g.machine_settings[i]) {
            Some(s) => json!({ "settings": s }),
            None => json!({}),
        };
        ms.insert(m.to_string(), entry);
    }
    if !ms.is_empty() {
        role.insert("machines".into(), Value::Object(ms));
    }
    let tags = subset(&TAGS, g.tags);
    if g.tags_as_object {
        let obj: Map<String, Value> = tags
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let entry = pick(g.tag_settings[i]).map_or(json!({}), |s| json!({ "settings": s }));
                (t.to_string(), entry)
            })
            .collect();
        role.insert("tags".into(), Value::Object(obj));
    } else if !tags.is_empty() {
        role.insert("tags".into(), json!(tags));
    }
    if let Some(s) = g.settings.and_then(pick) {
        role.insert("settings".into(), s);
    }
    Value::Object(role)
}

fn inventory() -> impl Strategy<Value = Value> {
    (
        any::<u32>(),
        proptest::collection::vec((0u32..16, any::<bool>()), 7),
        any::<u32>(),
        proptest::collection::vec((0usize..3, role_gen(), role_gen()), 0..4),
        any::<bool>(),
    )
        .prop_map(|(machine_bits, machine_specs, static_bits, instances, stray)| {
            let mut machine_names = subset(&MACHINES, machine_bits & 0x7f);
            if machine_names.is_empty() {
                machine_names.push("a");
            }
            let mut machines = Map::new();
            for (i, m) in machine_names.iter().enumerate() {
                let (tag_bits, darwin) = machine_specs[i];
                let class = if darwin { "darwin" } else { "nixos" };
                machines.insert(m.to_string(), json!({ "tags": subset(&TAGS[..3], tag_bits & 7), "machineClass": class }));
            }
            // Roles may name a machine that does not exist: an unknown-machine error.
            let mut role_machines = machine_names.clone();
            if stray {
                role_machines.push("stray");
            }
            let mut inst = Map::new();
            for (i, (kind, r1, r2)) in instances.iter().enumerate() {
                let (module, roles) = match kind {
                    0 => (
                        json!({ "name": "wiremesh", "input": "wiremesh" }),
                        json!({ "controller": role_value(r1, &controller_settings(), &role_machines),
                                "peer": role_value(r2, &peer_settings(), &role_machines) }),
                    ),
                    1 => (
                        json!({ "name": "wireguard" }),
                        json!({ "peer": role_value(r2, &[json!({}), json!({ "port": 1 }), json!({ "domain": "x" })], &role_machines) }),
                    ),
                    _ => (
                        json!({ "name": "wifi", "input": "self" }),
                        json!({ "default": role_value(r1, &[json!({ "networks": { "h": { "ssid": "H" } } }), json!({ "dns": ["198.18.0.1"] }), json!({ "networks": { "h": { "autoConnect": false } } })], &role_machines) }),
                    ),
                };
                inst.insert(format!("i{i}"), json!({ "module": module, "roles": roles }));
            }
            json!({
                "machines": machines,
                "tags": { "t3": subset(&MACHINES, static_bits & 0x7f) },
                "instances": inst
            })
        })
}

/// JSON text of `value` with every object's keys in an order drawn from `seed`.
fn shuffled_text(value: &Value, seed: &mut u64) -> String {
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            for i in (1..entries.len()).rev() {
                let j = (next(seed) % (i as u64 + 1)) as usize;
                entries.swap(i, j);
            }
            let parts: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), shuffled_text(v, seed)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(|v| shuffled_text(v, seed)).collect();
            format!("[{}]", parts.join(","))
        }
        scalar => scalar.to_string(),
    }
}

fn outcome(text: &str) -> String {
    match resolve(text, &catalog(), &ResolveOptions::default()) {
        Ok(r) => r.to_json_pretty(),
        Err(e) => format!("error {} at {}: {}", e.kind, e.path, e.message),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn resolution_is_deterministic_and_key_order_independent(inv in inventory(), s1 in 1u64.., s2 in 1u64..) {
        let (mut a, mut b) = (s1, s2);
        let text_a = shuffled_text(&inv, &mut a);
        let text_b = shuffled_text(&inv, &mut b);
        let first = outcome(&text_a);
        prop_assert_eq!(&first, &outcome(&text_a));
        prop_assert_eq!(&first, &outcome(&text_b));
    }
}

#[test]
fn the_generator_covers_successes_and_every_interesting_error() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..400 {
        let inv = inventory().new_tree(&mut runner).unwrap().current();
        let kind = match resolve(&inv.to_string(), &catalog(), &ResolveOptions::default()) {
            Ok(r) if r.machines.values().any(|v| !v.is_empty()) => "ok-with-members".to_string(),
            Ok(_) => "ok-empty".to_string(),
            Err(e) => e.kind.to_string(),
        };
        seen.insert(kind);
    }
    for expected in [
        "ok-with-members",
        "unknown-machine",
        "conflicting-settings",
        "invalid-setting-type",
    ] {
        assert!(
            seen.contains(expected),
            "generator never produced {expected}: {seen:?}"
        );
    }
}
