//! Resolving a large inventory: 10,000 machines and 50 instances (25 wiremesh, 25 clan-core
//! wireguard) whose roles use tags and three settings layers (role, machine, tag). Five instances
//! take every machine as a peer (tag `all`), the others one zone of 1,000, which makes about
//! 97,000 (instance, role, machine) results. Goal: one resolve under 1 s on a 2-core machine.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use wiremesh_inventory::{Catalog, ResolveOptions, resolve};

const MACHINES: usize = 10_000;
const INSTANCES: usize = 50;

fn inventory() -> String {
    let mut machines = Map::new();
    for i in 0..MACHINES {
        let class = if i % 50 == 0 { "darwin" } else { "nixos" };
        machines.insert(
            format!("m{i:05}"),
            json!({ "machineClass": class, "tags": [format!("zone-{}", i % 10), format!("rack-{}", i % 100)] }),
        );
    }
    let ops: Vec<String> = (0..MACHINES)
        .step_by(200)
        .map(|i| format!("m{i:05}"))
        .collect();
    let mut instances = Map::new();
    for k in 0..INSTANCES {
        let peer_tag = if k < 5 {
            "all".to_string()
        } else {
            format!("zone-{}", k % 10)
        };
        let explicit: Map<String, Value> = (0..20)
            .map(|j| {
                let m = format!("m{:05}", (k * 193 + j * 487) % MACHINES);
                let settings = if k % 2 == 0 {
                    json!({ "endpoints": [format!("198.18.{}.{}:51820", j, k + 1)], "routes": [format!("100.100.{j}.0/24")] })
                } else {
                    json!({ "port": 51820 + k as u64 })
                };
                (m, json!({ "settings": settings }))
            })
            .collect();
        let controller = format!("m{:05}", k * 7);
        let instance = if k % 2 == 0 {
            json!({
                "module": { "name": "wiremesh", "input": "wiremesh" },
                "roles": {
                    "controller": { "machines": { controller: { "settings": { "endpoint": format!("vpn{k}.example.org"), "dynamicIp": { "enable": true } } } },
                                    "settings": { "ipv4Network": "100.77.0.0/16" } },
                    "peer": {
                        "tags": {
                            peer_tag: { "settings": { "routes": ["100.101.0.0/24"] } },
                            format!("rack-{}", k): { "settings": { "mtu": 1380 } },
                            "ops": { "settings": { "persistentKeepalive": 10, "routes": ["100.102.0.0/24"] } }
                        },
                        "machines": explicit,
                        "settings": { "ipRanges": ["all"], "routes": ["100.100.255.0/24"] }
                    }
                }
            })
        } else {
            json!({
                "module": { "name": "wireguard" },
                "roles": {
                    "controller": { "machines": { controller.clone(): { "settings": { "endpoint": format!("wg{k}.example.org") } } } },
                    "peer": {
                        "tags": { peer_tag: { "settings": { "domain": format!("wg{k}") } }, format!("rack-{}", k): { "settings": { "mtu": 1380 } } },
                        "machines": explicit,
                        "settings": { "controller": controller }
                    }
                }
            })
        };
        instances.insert(format!("net-{k:02}"), instance);
    }
    json!({ "machines": machines, "tags": { "ops": ops }, "instances": instances }).to_string()
}

fn bench(c: &mut Criterion) {
    let text = inventory();
    let catalog = Catalog::from_json(include_str!(
        "../../../tests/fixtures/inventory/clan-core-modules.json"
    ))
    .expect("fixture catalog parses");
    let opts = ResolveOptions::default();
    let resolution = resolve(&text, &catalog, &opts).expect("benchmark inventory resolves");
    let results: usize = resolution.machines.values().map(Vec::len).sum();
    eprintln!(
        "inventory: {} bytes, {MACHINES} machines, {INSTANCES} instances, {results} (instance, role, machine) results",
        text.len()
    );

    let mut group = c.benchmark_group("resolve");
    group.sample_size(10);
    group.measurement_time(std::time::Duration::from_secs(12));
    group.bench_function("10k-machines-50-instances", |b| {
        b.iter(|| resolve(black_box(&text), &catalog, &opts))
    });
    group.bench_function("10k-machines-50-instances+json-output", |b| {
        b.iter(|| resolve(black_box(&text), &catalog, &opts).map(|r| r.to_json_pretty().len()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
