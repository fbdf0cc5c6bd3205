//! One test (or more) per resolution rule of issue 2: machines, tags, modules, roles, members,
//! settings merging, errors and constraints.

mod common;

use common::*;
use serde_json::json;
use wiremesh_inventory::{ErrorKind, ModuleRef, ResolveOptions, Warning};

// ---- machines and tags ----------------------------------------------------------------------

#[test]
fn machine_class_defaults_to_nixos_and_other_keys_are_ignored() {
    let r = ok(json!({
        "machines": {
            "a": { "deploy": { "targetHost": "root@198.18.0.1", "buildHost": null }, "description": "x", "icon": null, "installedAt": 1 },
            "b": { "machineClass": "darwin" },
            "c": { "machineClass": "nixos", "tags": [] }
        }
    }));
    assert_eq!(r.machine_tags["a"], ["all", "nixos"]);
    assert_eq!(r.machine_tags["b"], ["all", "darwin"]);
    assert_eq!(r.machine_tags["c"], ["all", "nixos"]);
    assert!(r.instances.is_empty());
    assert!(r.machines.values().all(Vec::is_empty));
}

#[test]
fn unknown_machine_class_is_an_error_with_path() {
    let e = err(json!({ "machines": { "a": { "machineClass": "windows" } } }));
    assert_eq!(e.kind, ErrorKind::InvalidInventory);
    assert_eq!(e.path, "machines.a.machineClass");
    assert!(e.message.contains("\"nixos\", \"darwin\""), "{}", e.message);
}

#[test]
fn effective_tags_are_own_static_and_computed_sorted_unique() {
    let r = ok(json!({
        "machines": { "a": { "tags": ["z", "b", "z"] }, "b": {} },
        "tags": { "backup": ["a", "ghost"], "web": ["b", "a"] }
    }));
    assert_eq!(
        r.machine_tags["a"],
        ["all", "b", "backup", "nixos", "web", "z"]
    );
    assert_eq!(r.machine_tags["b"], ["all", "nixos", "web"]);
}

#[test]
fn a_static_all_tag_replaces_the_computed_one() {
    let r = ok(json!({
        "machines": { "a": {}, "b": {} },
        "tags": { "all": ["a"] }
    }));
    assert_eq!(r.machine_tags["a"], ["all", "nixos"]);
    assert_eq!(r.machine_tags["b"], ["nixos"]);
}

// ---- modules --------------------------------------------------------------------------------

#[test]
fn module_name_defaults_to_instance_name_and_input_to_null() {
    let r = ok(json!({
        "machines": { "c": {}, "p": {} },
        "instances": { "zerotier": { "roles": { "controller": { "machines": { "c": {} } }, "peer": { "tags": ["all"] } } } }
    }));
    assert_eq!(
        r.instances["zerotier"].module,
        ModuleRef {
            input: None,
            name: "zerotier".into()
        }
    );
    assert_eq!(members(&r, "zerotier", "peer"), ["c", "p"]);
    assert_eq!(
        settings(&r, "c", "zerotier", "controller"),
        json!({ "allowedIds": [], "allowedIps": [], "public": false })
    );
}

#[test]
fn input_null_clan_core_and_self_are_echoed_as_written() {
    let r = ok(json!({
        "machines": { "c": {} },
        "instances": {
            "zt-null": { "module": { "name": "zerotier", "input": null }, "roles": { "controller": { "machines": { "c": {} } } } },
            "zt-cc": { "module": { "name": "zerotier", "input": "clan-core" }, "roles": { "controller": { "machines": { "c": {} } } } },
            "home": { "module": { "name": "wifi", "input": "self" }, "roles": { "default": { "machines": { "c": {} } } } }
        }
    }));
    assert_eq!(
        r.instances["zt-null"].module,
        ModuleRef {
            input: None,
            name: "zerotier".into()
        }
    );
    assert_eq!(
        r.instances["zt-cc"].module,
        ModuleRef {
            input: Some("clan-core".into()),
            name: "zerotier".into()
        }
    );
    assert_eq!(
        r.instances["home"].module,
        ModuleRef {
            input: Some("self".into()),
            name: "wifi".into()
        }
    );
    let roles: Vec<(&str, &str)> = r
        .roles_of("c")
        .iter()
        .map(|e| (e.instance.as_str(), e.role.as_str()))
        .collect();
    assert_eq!(
        roles,
        [
            ("home", "default"),
            ("zt-cc", "controller"),
            ("zt-null", "controller")
        ]
    );
    let json = r.to_json_pretty();
    assert!(json.contains("\"input\": null"), "{json}");
    assert!(json.contains("\"input\": \"clan-core\""), "{json}");
}

#[test]
fn clan_core_input_works_without_a_catalog_alias() {
    let catalog_text = common::CLAN_CORE_MODULES;
    let mut value: serde_json::Value = serde_json::from_str(catalog_text).unwrap();
    value.as_object_mut().unwrap().remove("clan-core");
    let catalog = wiremesh_inventory::Catalog::from_value(&value).unwrap();
    let inv = json!({
        "machines": { "c": {} },
        "instances": { "zt": { "module": { "name": "zerotier", "input": "clan-core" }, "roles": { "controller": { "machines": { "c": {} } } } } }
    });
    let r = wiremesh_inventory::resolve(&inv.to_string(), &catalog, &ResolveOptions::default())
        .unwrap();
    assert_eq!(members(&r, "zt", "controller"), ["c"]);
}

#[test]
fn unknown_input_is_unknown_module() {
    let e = err(
        json!({ "instances": { "x": { "module": { "name": "zerotier", "input": "nixpkgs" } } } }),
    );
    assert_eq!(e.kind, ErrorKind::UnknownModule);
    assert_eq!(e.path, "instances.x.module.input");
    assert!(
        e.message
            .starts_with("Flake doesn't provide input with name 'nixpkgs'"),
        "{}",
        e.message
    );
    assert!(e.message.contains("- self"), "{}", e.message);
    assert!(!e.message.contains("- <clan-core>"), "{}", e.message);

    // The catalog's name for the null input is not a flake input.
    let e = err(
        json!({ "instances": { "x": { "module": { "name": "zerotier", "input": "<clan-core>" } } } }),
    );
    assert_eq!(e.kind, ErrorKind::UnknownModule);
    assert_eq!(e.path, "instances.x.module.input");
}

#[test]
fn unknown_module_name_suggests_a_close_one() {
    let e = err(json!({ "instances": { "zt": { "module": { "name": "zerotir" } } } }));
    assert_eq!(e.kind, ErrorKind::UnknownModule);
    assert_eq!(e.path, "instances.zt.module.name");
    assert!(
        e.message.starts_with(
            "clan-core doesn't provide clan-module with name 'zerotir'. Did you mean `zerotier`?"
        ),
        "{}",
        e.message
    );

    let e = err(json!({ "instances": { "w": { "module": { "name": "wify", "input": "self" } } } }));
    assert!(
        e.message
            .starts_with("flake input 'self' doesn't provide clan-module with name 'wify'."),
        "{}",
        e.message
    );
}

#[test]
fn wiremesh_is_built_in_under_its_input_only() {
    let e = err(json!({ "instances": { "vpn": { "module": { "name": "wiremesh" } } } }));
    assert_eq!(e.kind, ErrorKind::UnknownModule);
    assert!(
        e.message.contains("module.input = \"wiremesh\""),
        "{}",
        e.message
    );

    let inv = json!({
        "machines": { "a": {} },
        "instances": { "vpn": { "module": { "name": "wiremesh", "input": "mesh" }, "roles": { "peer": { "tags": ["all"] } } } }
    });
    assert_eq!(run(&inv).unwrap_err().kind, ErrorKind::UnknownModule);
    let opts = ResolveOptions {
        wiremesh_input: "mesh".into(),
        ..ResolveOptions::default()
    };
    let r = run_with(&inv, &opts).unwrap();
    assert_eq!(settings(&r, "a", "vpn", "peer")["port"], 51820);
}

#[test]
fn the_wiremesh_input_exists_even_without_a_catalog_entry() {
    let e = err(
        json!({ "instances": { "x": { "module": { "name": "wiremsh", "input": "wiremesh" } } } }),
    );
    assert_eq!(e.kind, ErrorKind::UnknownModule);
    assert_eq!(e.path, "instances.x.module.name");
    assert!(
        e.message.starts_with(
            "flake input 'wiremesh' doesn't provide clan-module with name 'wiremsh'. Did you mean `wiremesh`?"
        ),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("Modules of 'wiremesh': [\"wiremesh\"]"),
        "{}",
        e.message
    );
}

// ---- roles and members ----------------------------------------------------------------------

#[test]
fn no_roles_empty_roles_and_roles_without_members_are_valid() {
    let r = ok(json!({
        "machines": { "a": {} },
        "instances": {
            "w1": { "module": { "name": "wifi", "input": "self" } },
            "w2": { "module": { "name": "wifi", "input": "self" }, "roles": {} },
            "w3": { "module": { "name": "wifi", "input": "self" }, "roles": { "default": {} } },
            "w4": { "module": { "name": "wifi", "input": "self" }, "roles": { "default": { "machines": {}, "tags": [] } } }
        }
    }));
    assert!(r.instances["w1"].roles.is_empty());
    assert!(r.instances["w2"].roles.is_empty());
    assert!(r.instances["w3"].roles["default"].machines.is_empty());
    assert!(r.instances["w4"].roles["default"].machines.is_empty());
    assert!(r.machines["a"].is_empty());
    assert!(r.warnings.is_empty());
}

#[test]
fn members_are_explicit_plus_tagged_deduplicated_and_sorted_bytewise() {
    let r = ok(json!({
        "machines": { "b": { "tags": ["t"] }, "Z": { "tags": ["t"] }, "a": {}, "a-1": { "tags": ["u"] } },
        "instances": { "w": { "module": { "name": "wifi", "input": "self" }, "roles": { "default": {
            "machines": { "b": {}, "a": {} }, "tags": ["t", "u"]
        } } } }
    }));
    assert_eq!(members(&r, "w", "default"), ["Z", "a", "a-1", "b"]);
}

#[test]
fn tags_may_be_a_list_or_an_object_with_settings() {
    let r = ok(wiremesh(json!({
        "peer": { "tags": { "laptop": { "settings": { "mtu": 1280 } }, "office": {} } }
    })));
    assert_eq!(members(&r, "vpn", "peer"), ["desktop", "laptop"]);
    assert_eq!(settings(&r, "laptop", "vpn", "peer")["mtu"], 1280);
    assert_eq!(settings(&r, "desktop", "vpn", "peer")["mtu"], 1420);
}

#[test]
fn a_tag_nobody_carries_is_a_warning() {
    let r = ok(wiremesh(json!({ "peer": { "tags": ["all", "nobody"] } })));
    assert_eq!(
        r.warnings,
        [Warning::EmptyTag {
            instance: "vpn".into(),
            role: "peer".into(),
            tag: "nobody".into()
        }]
    );
    let json = r.to_json_pretty();
    assert!(json.contains("\"warnings\": [\n    {\n      \"instance\": \"vpn\",\n      \"kind\": \"empty-tag\",\n      \"role\": \"peer\",\n      \"tag\": \"nobody\"\n    }\n  ]"), "{json}");
}

#[test]
fn extra_modules_are_accepted_and_ignored() {
    let r = ok(wiremesh(
        json!({ "peer": { "tags": ["all"], "extraModules": ["./x.nix", { "a": 1 }] } }),
    ));
    assert_eq!(members(&r, "vpn", "peer").len(), 3);
}

#[test]
fn a_machine_in_two_roles_of_one_instance() {
    let r = ok(wiremesh(json!({
        "controller": { "machines": { "server": { "settings": { "endpoint": "vpn.example.org" } } } },
        "peer": { "tags": ["all"] }
    })));
    let roles: Vec<&str> = r
        .roles_of("server")
        .iter()
        .map(|e| e.role.as_str())
        .collect();
    assert_eq!(roles, ["controller", "peer"]);
    assert_eq!(
        settings(&r, "server", "vpn", "controller")["endpoint"],
        "vpn.example.org"
    );
    assert_eq!(settings(&r, "server", "vpn", "peer")["port"], 51820);
}

#[test]
fn two_instances_of_the_same_module_are_independent() {
    let r = ok(json!({
        "machines": { "a": {}, "b": {} },
        "instances": {
            "home": { "module": { "name": "wireguard" }, "roles": { "controller": { "machines": { "a": { "settings": { "endpoint": "a.example.org" } } } }, "peer": { "machines": { "b": {} } } } },
            "work": { "module": { "name": "wireguard" }, "roles": { "controller": { "machines": { "b": { "settings": { "endpoint": "b.example.org", "port": 51821 } } } }, "peer": { "machines": { "a": {} } } } }
        }
    }));
    assert_eq!(
        settings(&r, "a", "home", "controller"),
        json!({ "domain": null, "endpoint": "a.example.org", "mtu": null, "port": 51820 })
    );
    assert_eq!(settings(&r, "b", "work", "controller")["port"], 51821);
    // `controller` is required and unset: left out, as Clan leaves it unread.
    assert_eq!(
        settings(&r, "a", "work", "peer"),
        json!({ "domain": null, "mtu": null, "port": 51820 })
    );
    let entries: Vec<(&str, &str)> = r
        .roles_of("a")
        .iter()
        .map(|e| (e.instance.as_str(), e.role.as_str()))
        .collect();
    assert_eq!(entries, [("home", "controller"), ("work", "peer")]);
}

#[test]
fn unknown_role_uses_clans_wording() {
    let e = err(wiremesh(
        json!({ "server": { "machines": { "server": {} } } }),
    ));
    assert_eq!(e.kind, ErrorKind::UnknownRole);
    assert_eq!(e.path, "instances.vpn.roles.server");
    assert!(e.message.starts_with("Instance: 'instances.vpn' uses the following roles:\n[\"server\"]\n\nBut the clan-service module 'wiremesh' only defines roles:\n[\"controller\",\"peer\"]"), "{}", e.message);
}

#[test]
fn unknown_machine_is_an_error_with_a_suggestion() {
    let e = err(wiremesh(
        json!({ "peer": { "machines": { "labtop": {} } } }),
    ));
    assert_eq!(e.kind, ErrorKind::UnknownMachine);
    assert_eq!(e.path, "instances.vpn.roles.peer.machines.labtop");
    assert!(
        e.message.contains("Did you mean `laptop`?"),
        "{}",
        e.message
    );
}

#[test]
fn only_restricts_to_the_named_modules() {
    let inv = json!({
        "machines": { "a": {} },
        "instances": {
            "vpn": { "module": { "name": "wiremesh", "input": "wiremesh" }, "roles": { "peer": { "tags": ["all"] } } },
            "borg": { "module": { "name": "borgbackup", "input": "elsewhere" }, "roles": { "client": { "machines": { "nobody": {} } } } }
        }
    });
    assert_eq!(run(&inv).unwrap_err().kind, ErrorKind::UnknownModule);
    let opts = ResolveOptions {
        only: vec!["wiremesh".into()],
        ..ResolveOptions::default()
    };
    let r = run_with(&inv, &opts).unwrap();
    assert_eq!(r.instances.keys().collect::<Vec<_>>(), ["vpn"]);
    assert_eq!(r.roles_of("a").len(), 1);
}

// ---- settings -------------------------------------------------------------------------------

#[test]
fn defaults_apply_only_where_no_layer_defines_the_option() {
    let r = ok(wiremesh(json!({
        "peer": { "tags": ["all"], "settings": { "ipRanges": ["100.64.0.0/10"] } }
    })));
    assert_eq!(
        settings(&r, "server", "vpn", "peer")["ipRanges"],
        json!(["100.64.0.0/10"])
    );
    assert_eq!(
        settings(&r, "server", "vpn", "peer")["endpoints"],
        json!([])
    );
}

#[test]
fn required_options_with_no_definition_are_left_out() {
    let r = ok(wiremesh(
        json!({ "controller": { "machines": { "server": {} } } }),
    ));
    let s = settings(&r, "server", "vpn", "controller");
    assert!(s.get("endpoint").is_none(), "{s}");
    assert_eq!(s["controlPort"], 51821);
}

#[test]
fn objects_merge_recursively() {
    let r = ok(wiremesh(json!({
        "controller": {
            "settings": { "endpoint": "vpn.example.org", "dynamicIp": { "enable": true } },
            "machines": { "server": { "settings": { "dynamicIp": { "range": "100.77.128.0/17" } } } }
        }
    })));
    assert_eq!(
        settings(&r, "server", "vpn", "controller")["dynamicIp"],
        json!({ "enable": true, "range": "100.77.128.0/17" })
    );
}

#[test]
fn attrs_of_submodules_merge_by_key_like_clans_wifi_example() {
    let r = ok(json!({
        "machines": { "a": { "tags": ["t"] } },
        "instances": { "w": { "module": { "name": "wifi", "input": "self" }, "roles": { "default": {
            "settings": { "networks": { "home": { "ssid": "Home" } } },
            "machines": { "a": { "settings": { "networks": { "office": { "ssid": "Office", "autoConnect": false } } } } },
            "tags": { "t": { "settings": { "networks": { "home": { "autoConnect": true } } } } }
        } } } }
    }));
    assert_eq!(
        settings(&r, "a", "w", "default"),
        json!({
            "band": null,
            "dns": ["198.18.0.53"],
            "networks": {
                "home": { "autoConnect": true, "ssid": "Home" },
                "office": { "autoConnect": false, "ssid": "Office" }
            },
            "priority": 0
        })
    );
}

#[test]
fn lists_concatenate_tags_in_reverse_name_order_then_machine_then_role() {
    let r = ok(wiremesh(json!({
        "peer": {
            "settings": { "routes": ["100.100.0.0/24"] },
            "machines": { "laptop": { "settings": { "routes": ["100.100.1.0/24"] } } },
            "tags": {
                "laptop": { "settings": { "routes": ["100.100.2.0/24"] } },
                "mobile": { "settings": { "routes": ["100.100.3.0/24"] } },
                "office": { "settings": { "routes": ["100.100.4.0/24"] } }
            }
        }
    })));
    assert_eq!(
        settings(&r, "laptop", "vpn", "peer")["routes"],
        json!([
            "100.100.3.0/24",
            "100.100.2.0/24",
            "100.100.1.0/24",
            "100.100.0.0/24"
        ])
    );
    assert_eq!(
        settings(&r, "desktop", "vpn", "peer")["routes"],
        json!(["100.100.4.0/24", "100.100.0.0/24"])
    );
}

#[test]
fn equal_scalars_in_several_layers_are_fine() {
    let r = ok(wiremesh(json!({
        "peer": { "settings": { "mtu": 1400 }, "machines": { "laptop": { "settings": { "mtu": 1400 } } }, "tags": { "mobile": { "settings": { "mtu": 1400 } } } }
    })));
    assert_eq!(settings(&r, "laptop", "vpn", "peer")["mtu"], 1400);
}

#[test]
fn different_scalars_conflict_naming_both_definitions() {
    let e = err(wiremesh(json!({
        "peer": { "settings": { "port": 51820 }, "machines": { "laptop": { "settings": { "port": 51821 } } } }
    })));
    assert_eq!(e.kind, ErrorKind::ConflictingSettings);
    assert_eq!(
        e.path,
        "instances.vpn.roles.peer.machines.laptop.settings.port"
    );
    assert!(
        e.message.starts_with(
            "The option `instances.vpn.roles.peer.machines.laptop.settings.port` has conflicting definition values:\n- In `instances.vpn.roles.peer.machines.laptop.settings`: 51821\n- In `instances.vpn.roles.peer.settings`: 51820\nUse `lib.mkForce value` or `lib.mkDefault value`"
        ),
        "{}",
        e.message
    );
}

#[test]
fn conflicts_are_found_through_tag_layers_for_tag_members() {
    let e = err(wiremesh(json!({
        "peer": { "tags": { "laptop": { "settings": { "mtu": 1300 } }, "mobile": { "settings": { "mtu": 1400 } } } }
    })));
    assert_eq!(e.kind, ErrorKind::ConflictingSettings);
    assert_eq!(
        e.path,
        "instances.vpn.roles.peer.machines.laptop.settings.mtu"
    );
    assert!(e.message.contains("- In `instances.vpn.roles.peer.tags.mobile.settings`: 1400\n- In `instances.vpn.roles.peer.tags.laptop.settings`: 1300"), "{}", e.message);
}

#[test]
fn null_and_non_null_definitions_conflict() {
    let e = err(wiremesh(json!({
        "peer": { "settings": { "persistentKeepalive": null }, "machines": { "laptop": { "settings": { "persistentKeepalive": 10 } } } }
    })));
    assert_eq!(e.kind, ErrorKind::ConflictingSettings);
    assert!(
        e.message.contains("is defined both null and not null"),
        "{}",
        e.message
    );
}

#[test]
fn override_priority_lowest_number_wins() {
    let force = |v: serde_json::Value| json!({ "_type": "override", "priority": 50, "content": v });
    let default =
        |v: serde_json::Value| json!({ "_type": "override", "priority": 1000, "content": v });
    let r = ok(wiremesh(json!({
        "peer": {
            "tags": ["all"],
            "settings": { "port": 51820, "mtu": default(json!(1300)), "routes": ["100.100.0.0/24"] },
            "machines": { "laptop": { "settings": { "port": force(json!(51999)), "mtu": 1380, "routes": force(json!(["100.100.9.0/24"])) } } }
        }
    })));
    let s = settings(&r, "laptop", "vpn", "peer");
    assert_eq!(s["port"], 51999);
    assert_eq!(s["mtu"], 1380);
    assert_eq!(s["routes"], json!(["100.100.9.0/24"]));
    let d = settings(&r, "desktop", "vpn", "peer");
    assert_eq!(
        (d["port"].clone(), d["mtu"].clone()),
        (json!(51820), json!(1300))
    );
}

#[test]
fn equal_priority_overrides_with_different_scalars_conflict() {
    let force = |v: i64| json!({ "_type": "override", "priority": 50, "content": v });
    let e = err(wiremesh(json!({
        "peer": { "settings": { "port": force(1) }, "machines": { "laptop": { "settings": { "port": force(2) } } } }
    })));
    assert_eq!(e.kind, ErrorKind::ConflictingSettings);
}

#[test]
fn a_priority_above_the_default_loses_to_the_interface_default() {
    let r = ok(wiremesh(json!({
        "peer": { "machines": { "laptop": { "settings": { "mtu": { "_type": "override", "priority": 2000, "content": 1300 } } } } }
    })));
    assert_eq!(settings(&r, "laptop", "vpn", "peer")["mtu"], 1420);
}

#[test]
fn overrides_work_inside_submodules_and_list_elements() {
    let r = ok(wiremesh(json!({
        "controller": {
            "settings": { "endpoint": "vpn.example.org", "dynamicIp": { "enable": true } },
            "machines": { "server": { "settings": {
                "dynamicIp": { "enable": { "_type": "override", "priority": 50, "content": false } }
            } } }
        },
        "peer": { "machines": { "laptop": { "settings": { "routes": [{ "_type": "override", "priority": 10, "content": "100.100.0.0/24" }] } } } }
    })));
    assert_eq!(
        settings(&r, "server", "vpn", "controller")["dynamicIp"]["enable"],
        false
    );
    assert_eq!(
        settings(&r, "laptop", "vpn", "peer")["routes"],
        json!(["100.100.0.0/24"])
    );
}

#[test]
fn malformed_overrides_are_refused() {
    for (bad, what) in [
        (
            json!({ "_type": "override", "content": 1 }),
            "no integer `priority`",
        ),
        (
            json!({ "_type": "override", "priority": 50 }),
            "no `content`",
        ),
        (
            json!({ "_type": "override", "priority": 50, "content": 1, "x": 1 }),
            "unknown key `x`",
        ),
        (
            json!({ "_type": "if", "condition": true, "content": 1 }),
            "not supported",
        ),
    ] {
        let e = err(wiremesh(json!({ "peer": { "settings": { "mtu": bad } } })));
        assert_eq!(e.kind, ErrorKind::InvalidSettingType);
        assert_eq!(e.path, "instances.vpn.roles.peer.settings.mtu");
        assert!(e.message.contains(what), "{}", e.message);
    }
}

#[test]
fn unknown_setting_names_the_layer_and_suggests() {
    let e = err(wiremesh(json!({
        "controller": { "machines": { "server": { "settings": { "endpont": "vpn.example.org" } } } }
    })));
    assert_eq!(e.kind, ErrorKind::UnknownSetting);
    assert_eq!(
        e.path,
        "instances.vpn.roles.controller.machines.server.settings.endpont"
    );
    assert!(e.message.starts_with("The option `instances.vpn.roles.controller.machines.server.settings.endpont` does not exist. Definition values:\n- In `instances.vpn.roles.controller.machines.server.settings`: \"vpn.example.org\"\nDid you mean `endpoint`?"), "{}", e.message);

    let e = err(wiremesh(json!({
        "controller": { "machines": { "server": { "settings": { "dynamicIp": { "enabled": true } } } } }
    })));
    assert_eq!(
        e.path,
        "instances.vpn.roles.controller.machines.server.settings.dynamicIp.enabled"
    );
    assert!(
        e.message.contains("Did you mean `enable`?"),
        "{}",
        e.message
    );
}

#[test]
fn settings_are_checked_eagerly_even_where_no_member_reads_them() {
    // A tag no machine carries, and a role with no members: Clan would never read these.
    let e = err(wiremesh(
        json!({ "peer": { "tags": { "nobody": { "settings": { "mtu": "big" } } } } }),
    ));
    assert_eq!(e.kind, ErrorKind::InvalidSettingType);
    assert_eq!(e.path, "instances.vpn.roles.peer.tags.nobody.settings.mtu");

    let e = err(wiremesh(
        json!({ "controller": { "settings": { "prot": 1 } } }),
    ));
    assert_eq!(e.kind, ErrorKind::UnknownSetting);
    assert_eq!(e.path, "instances.vpn.roles.controller.settings.prot");
}

#[test]
fn wrong_types_are_invalid_setting_type_in_nix_words() {
    let cases = [
        (
            json!({ "peer": { "settings": { "mtu": "1420" } } }),
            "peer.settings.mtu",
            "integer between 1280 and 65472",
        ),
        (
            json!({ "peer": { "settings": { "mtu": 1.5 } } }),
            "peer.settings.mtu",
            "integer",
        ),
        (
            json!({ "peer": { "settings": { "mtu": 100 } } }),
            "peer.settings.mtu",
            "integer between 1280 and 65472",
        ),
        (
            json!({ "peer": { "settings": { "port": 70000 } } }),
            "peer.settings.port",
            "16 bit unsigned integer",
        ),
        (
            json!({ "peer": { "settings": { "port": -1 } } }),
            "peer.settings.port",
            "16 bit unsigned integer",
        ),
        (
            json!({ "peer": { "settings": { "routes": "100.100.0.0/24" } } }),
            "peer.settings.routes",
            "list of string",
        ),
        (
            json!({ "peer": { "settings": { "routes": [1] } } }),
            "peer.settings.routes[0]",
            "string",
        ),
        (
            json!({ "peer": { "settings": { "persistentKeepalive": true } } }),
            "peer.settings.persistentKeepalive",
            "null or integer",
        ),
        (
            json!({ "controller": { "settings": { "dynamicIp": true } } }),
            "controller.settings.dynamicIp",
            "submodule",
        ),
        (
            json!({ "controller": { "settings": { "dynamicIp": { "enable": "yes" } } } }),
            "controller.settings.dynamicIp.enable",
            "boolean",
        ),
        (
            json!({ "peer": { "settings": [] } }),
            "peer.settings",
            "attribute set",
        ),
        (
            json!({ "peer": { "settings": "x" } }),
            "peer.settings",
            "attribute set",
        ),
    ];
    for (roles, path, expected) in cases {
        let e = err(wiremesh(roles.clone()));
        assert_eq!(e.kind, ErrorKind::InvalidSettingType, "{roles}");
        assert_eq!(e.path, format!("instances.vpn.roles.{path}"), "{roles}");
        assert!(e.message.contains(expected), "{roles}: {}", e.message);
    }
}

#[test]
fn wiremesh_formats_are_validated_when_resolving() {
    let cases = [
        (
            json!({ "controller": { "settings": { "ipv4Network": "100.77.0.5/16" } } }),
            "controller.settings.ipv4Network",
            "did you mean 100.77.0.0/16?",
        ),
        (
            json!({ "controller": { "settings": { "ipv4Network": "fd00::/8" } } }),
            "controller.settings.ipv4Network",
            "IPv4 one is needed",
        ),
        (
            json!({ "controller": { "settings": { "ipv6Network": "fd00::1" } } }),
            "controller.settings.ipv6Network",
            "CIDR",
        ),
        (
            json!({ "controller": { "settings": { "endpoint": "vpn.example.org:51821" } } }),
            "controller.settings.endpoint",
            "DNS label",
        ),
        (
            json!({ "controller": { "settings": { "dynamicIp": { "range": "100.77.0.0/33" } } } }),
            "controller.settings.dynamicIp.range",
            "CIDR",
        ),
        (
            json!({ "peer": { "settings": { "endpoints": ["198.18.0.1:51820", "fd00::1:51820"] } } }),
            "peer.settings.endpoints[1]",
            "[fd00::1]:51820",
        ),
        (
            json!({ "peer": { "settings": { "endpoints": ["vpn.example.org"] } } }),
            "peer.settings.endpoints[0]",
            "missing :port",
        ),
        (
            json!({ "peer": { "settings": { "ipv4": "100.64.0.300" } } }),
            "peer.settings.ipv4",
            "IPv4 address",
        ),
        (
            json!({ "peer": { "settings": { "ipRanges": ["everything"] } } }),
            "peer.settings.ipRanges[0]",
            "\"all\" or an IP network",
        ),
        (
            json!({ "peer": { "settings": { "routes": ["100.100.0.1/24"] } } }),
            "peer.settings.routes[0]",
            "host bits",
        ),
        (
            json!({ "peer": { "settings": { "interface": "wm-a-very-long-name" } } }),
            "peer.settings.interface",
            "1 to 15",
        ),
    ];
    for (roles, path, expected) in cases {
        let e = err(wiremesh(roles.clone()));
        assert_eq!(e.kind, ErrorKind::InvalidSettingType, "{roles}");
        assert_eq!(e.path, format!("instances.vpn.roles.{path}"), "{roles}");
        assert!(e.message.contains(expected), "{roles}: {}", e.message);
    }
    let r = ok(wiremesh(json!({
        "controller": { "machines": { "server": { "settings": {
            "endpoint": "198.18.0.1", "ipv4Network": "100.77.0.0/16", "ipv6Network": "fd12:3456:789a::/48",
            "dynamicIp": { "enable": true, "range": "100.77.128.0/17" }
        } } } },
        "peer": { "tags": ["all"], "settings": { "ipRanges": ["all", "100.100.0.0/24"] }, "machines": { "server": { "settings": {
            "endpoints": ["198.18.0.1:51820", "[fd00::1]:51820", "vpn.example.org:51820"], "ipv4": "100.77.0.1", "interface": "wm-vpn"
        } } } }
    })));
    assert_eq!(
        settings(&r, "server", "vpn", "peer")["endpoints"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

// ---- constraints ----------------------------------------------------------------------------

#[test]
fn role_constraints_use_clans_wording() {
    let e = err(json!({
        "machines": { "p": {} },
        "instances": { "zt": { "module": { "name": "zerotier" }, "roles": { "peer": { "tags": ["all"] } } } }
    }));
    assert_eq!(e.kind, ErrorKind::ConstraintViolation);
    assert_eq!(e.path, "instances.zt.roles.controller");
    assert_eq!(
        e.message,
        "Role 'controller' of service 'clan-core/zerotier' instance 'zt' requires at least 1 machine(s) but 0 are assigned."
    );

    let e = err(json!({
        "machines": { "a": {}, "b": {} },
        "instances": { "zt": { "module": { "name": "zerotier" }, "roles": { "controller": { "tags": ["all"] } } } }
    }));
    assert_eq!(
        e.message,
        "Role 'controller' of service 'clan-core/zerotier' instance 'zt' allows at most 1 machine(s) but 2 are assigned."
    );

    let machines: serde_json::Map<String, serde_json::Value> =
        (0..5).map(|i| (format!("m{i}"), json!({}))).collect();
    let e = err(json!({
        "machines": machines,
        "instances": { "zt": { "module": { "name": "zerotier" }, "roles": {
            "controller": { "machines": { "m0": {} } },
            "moon": { "tags": ["all"], "settings": { "stableEndpoints": ["198.18.0.1"] } }
        } } }
    }));
    assert_eq!(e.path, "instances.zt.roles.moon");
    assert!(
        e.message
            .contains("allows at most 4 machine(s) but 5 are assigned"),
        "{}",
        e.message
    );
}

#[test]
fn max_instances_counts_per_input_and_name() {
    let inv = |names: &[&str]| {
        let instances: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    json!({ "module": { "name": "single", "input": "self" } }),
                )
            })
            .collect();
        json!({ "instances": instances })
    };
    ok(inv(&["one"]));
    let e = err(inv(&["one", "two"]));
    assert_eq!(e.kind, ErrorKind::ConstraintViolation);
    assert_eq!(e.path, "instances.two");
    assert_eq!(
        e.message,
        "Service 'self/single' allows at most 1 instance(s) but 2 are defined: [\"one\",\"two\"]."
    );

    // The same module through other inputs is another Clan service group, counted apart: null
    // and "clan-core" too, although "clan-core" aliases the null input's modules.
    let single = json!({ "manifest": { "name": "single", "constraints": { "maxInstances": 1 } }, "roles": { "default": {} } });
    let catalog = wiremesh_inventory::Catalog::from_value(&json!({
        "<clan-core>": { "single": single },
        "clan-core": { "single": "=<clan-core>/single" },
        "mirror": { "single": "=<clan-core>/single" }
    }))
    .unwrap();
    let grouped = |inputs: &[serde_json::Value]| {
        let instances: serde_json::Map<String, serde_json::Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                (
                    format!("i{i}"),
                    json!({ "module": { "name": "single", "input": input } }),
                )
            })
            .collect();
        let inv = json!({ "instances": instances }).to_string();
        wiremesh_inventory::resolve(&inv, &catalog, &ResolveOptions::default())
    };
    let r = grouped(&[json!(null), json!("clan-core"), json!("mirror")]).unwrap();
    assert_eq!(r.instances.len(), 3);
    let e = grouped(&[json!("mirror"), json!(null), json!("mirror")]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConstraintViolation);
    assert_eq!(e.path, "instances.i2");
}

#[test]
fn the_json_output_reads_back_into_the_same_resolution() {
    let r = ok(wiremesh(json!({
        "controller": { "machines": { "server": { "settings": { "endpoint": "vpn.example.org" } } } },
        "peer": { "tags": ["all", "nobody"] }
    })));
    let back: wiremesh_inventory::Resolution = serde_json::from_str(&r.to_json_pretty()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn errors_come_in_instance_order_whatever_their_kind() {
    let inv = |first: &str, second: &str| {
        json!({
            "machines": { "a": {} },
            "instances": {
                first: { "module": { "name": "wiremesh", "input": "wiremesh" }, "roles": {
                    "peer": { "settings": { "mtu": 1300 }, "machines": { "a": { "settings": { "mtu": 1400 } } } }
                } },
                second: { "module": { "name": "wiremesh", "input": "wiremesh" }, "roles": {
                    "peer": { "machines": { "ghost": {} } }
                } }
            }
        })
    };
    let e = err(inv("a-conflict", "b-unknown"));
    assert_eq!(e.kind, ErrorKind::ConflictingSettings);
    assert_eq!(
        e.path,
        "instances.a-conflict.roles.peer.machines.a.settings.mtu"
    );
    let e = err(inv("b-conflict", "a-unknown"));
    assert_eq!(e.kind, ErrorKind::UnknownMachine);
    assert_eq!(e.path, "instances.a-unknown.roles.peer.machines.ghost");
}
