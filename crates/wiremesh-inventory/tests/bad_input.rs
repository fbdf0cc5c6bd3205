//! Bad input never panics: malformed JSON, wrong types at every level of the inventory, huge and
//! deeply nested documents each give an error with a path.

mod common;

use common::*;
use serde_json::{Value, json};
use wiremesh_inventory::{Catalog, ErrorKind, MAX_INPUT_BYTES, ResolveOptions, resolve};

fn text_err(text: &str) -> wiremesh_inventory::ResolveError {
    match resolve(text, &catalog(), &ResolveOptions::default()) {
        Ok(r) => panic!("expected an error for {text:?}, got {}", r.to_json_pretty()),
        Err(e) => e,
    }
}

#[test]
fn malformed_json_reports_line_column_and_path() {
    for (text, path) in [
        ("", ""),
        ("{", ""),
        (
            "{\"machines\": {\"a\": {\"tags\": [\"x\",]}}}",
            "machines.a.tags[1]",
        ),
        (
            "{\"instances\": {\"vpn\": {\"roles\": {\"peer\": {\"settings\": {\"mtu\": 14 20}}}}}}",
            "instances.vpn.roles.peer.settings.mtu",
        ),
        ("{\"machines\": {} } trailing", ""),
        ("[1, 2", "[1]"),
        ("{\"a\": \"\\u00\"}", "a"),
        ("\u{feff}{}", ""),
    ] {
        let e = text_err(text);
        assert_eq!(e.kind, ErrorKind::InvalidJson, "{text:?}");
        assert_eq!(e.path, path, "{text:?}: {}", e.message);
        assert!(
            e.message.starts_with("inventory is not valid JSON"),
            "{}",
            e.message
        );
        assert!(e.message.contains("line "), "{}", e.message);
    }
}

#[test]
fn wrong_types_at_every_level_name_the_path() {
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), ""),
        (json!("inventory"), ""),
        (json!(null), ""),
        (json!({ "machines": [] }), "machines"),
        (json!({ "machines": { "a": "nixos" } }), "machines.a"),
        (
            json!({ "machines": { "a": { "tags": "x" } } }),
            "machines.a.tags",
        ),
        (
            json!({ "machines": { "a": { "tags": ["x", 1] } } }),
            "machines.a.tags[1]",
        ),
        (
            json!({ "machines": { "a": { "machineClass": 1 } } }),
            "machines.a.machineClass",
        ),
        (json!({ "tags": [] }), "tags"),
        (json!({ "tags": { "t": "a" } }), "tags.t"),
        (json!({ "tags": { "t": [null] } }), "tags.t[0]"),
        (json!({ "instances": [] }), "instances"),
        (json!({ "instances": { "vpn": [] } }), "instances.vpn"),
        (
            json!({ "instances": { "vpn": { "module": "wiremesh" } } }),
            "instances.vpn.module",
        ),
        (
            json!({ "instances": { "vpn": { "module": { "name": 1 } } } }),
            "instances.vpn.module.name",
        ),
        (
            json!({ "instances": { "vpn": { "module": { "name": "wiremesh", "input": false } } } }),
            "instances.vpn.module.input",
        ),
        (
            json!({ "instances": { "vpn": { "module": { "name": "wiremesh", "inptu": "wiremesh" } } } }),
            "instances.vpn.module.inptu",
        ),
        (
            json!({ "instances": { "vpn": { "modul": {} } } }),
            "instances.vpn.modul",
        ),
    ];
    for (inventory, path) in cases {
        let e = err(inventory.clone());
        assert_eq!(e.kind, ErrorKind::InvalidInventory, "{inventory}");
        assert_eq!(e.path, path, "{inventory}: {}", e.message);
    }
    let role_cases: Vec<(Value, &str)> = vec![
        (json!([]), "roles"),
        (json!({ "peer": [] }), "roles.peer"),
        (
            json!({ "peer": { "machines": ["laptop"] } }),
            "roles.peer.machines",
        ),
        (
            json!({ "peer": { "machines": { "laptop": "yes" } } }),
            "roles.peer.machines.laptop",
        ),
        (
            json!({ "peer": { "machines": { "laptop": { "setting": {} } } } }),
            "roles.peer.machines.laptop.setting",
        ),
        (json!({ "peer": { "tags": "all" } }), "roles.peer.tags"),
        (json!({ "peer": { "tags": [1] } }), "roles.peer.tags[0]"),
        (
            json!({ "peer": { "tags": { "all": [] } } }),
            "roles.peer.tags.all",
        ),
        (
            json!({ "peer": { "tags": { "all": { "settings": {}, "x": 1 } } } }),
            "roles.peer.tags.all.x",
        ),
        (json!({ "peer": { "setings": {} } }), "roles.peer.setings"),
    ];
    for (roles, path) in role_cases {
        let e = err(wiremesh(roles.clone()));
        assert_eq!(e.kind, ErrorKind::InvalidInventory, "{roles}");
        assert_eq!(
            e.path,
            format!("instances.vpn.{path}"),
            "{roles}: {}",
            e.message
        );
    }
    let e = err(wiremesh(json!({ "peer": { "setings": {} } })));
    assert!(
        e.message.contains("Did you mean `settings`?"),
        "{}",
        e.message
    );
}

#[test]
fn the_removed_services_option_and_unknown_top_level_keys_are_refused() {
    let e = err(json!({ "services": {} }));
    assert_eq!(e.path, "services");
    assert!(
        e.message
            .contains("has been removed. Use `inventory.instances` instead."),
        "{}",
        e.message
    );
    let e = err(json!({ "instance": {} }));
    assert_eq!(e.path, "instance");
    assert!(
        e.message.contains("Did you mean `instances`?"),
        "{}",
        e.message
    );
    ok(json!({ "meta": { "name": "x" }, "modules": {}, "assertions": {} }));
}

#[test]
fn deep_nesting_anywhere_is_an_error_not_a_stack_overflow() {
    for depth in [200, 10_000, 1_000_000] {
        let deep = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let text = format!(
            "{{\"instances\": {{\"vpn\": {{\"roles\": {{\"peer\": {{\"settings\": {{\"routes\": {deep}}}}}}}}}}}}}"
        );
        let e = text_err(&text);
        assert_eq!(e.kind, ErrorKind::InvalidJson);
        assert!(
            e.message.contains("recursion limit exceeded"),
            "{}",
            e.message
        );
        assert!(
            e.path
                .starts_with("instances.vpn.roles.peer.settings.routes[0][0]"),
            "{}",
            e.path
        );
        let deep_objects = "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth);
        assert_eq!(text_err(&deep_objects).kind, ErrorKind::InvalidJson);
    }
}

#[test]
fn nesting_within_the_parser_limit_in_settings_is_a_type_error() {
    let mut value = json!("100.100.0.0/24");
    for _ in 0..100 {
        value = json!([value]);
    }
    let e = err(wiremesh(
        json!({ "peer": { "settings": { "routes": value } } }),
    ));
    assert_eq!(e.kind, ErrorKind::InvalidSettingType);
    assert_eq!(e.path, "instances.vpn.roles.peer.settings.routes[0]");
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let text = " ".repeat(MAX_INPUT_BYTES + 1);
    let e = text_err(&text);
    assert_eq!(e.kind, ErrorKind::InputTooLarge);
    assert_eq!(e.path, "");
}

#[test]
fn large_values_do_not_overflow() {
    for mtu in [json!(u64::MAX), json!(i64::MIN), json!(1e300), json!(-0.0)] {
        let e = err(wiremesh(json!({ "peer": { "settings": { "mtu": mtu } } })));
        assert_eq!(e.kind, ErrorKind::InvalidSettingType);
    }
    let e = err(wiremesh(
        json!({ "peer": { "settings": { "mtu": { "_type": "override", "priority": u64::MAX, "content": 1300 } } } }),
    ));
    assert_eq!(e.kind, ErrorKind::InvalidSettingType);
    let long = "x".repeat(1 << 20);
    let e = err(wiremesh(
        json!({ "peer": { "settings": { "interface": long } } }),
    ));
    assert!(e.message.len() < 1000, "messages truncate long values");
}

#[test]
fn wide_inventories_resolve() {
    let machines: serde_json::Map<String, Value> = (0..3000)
        .map(|i| {
            (
                format!("m{i:05}"),
                json!({ "tags": [format!("g{}", i % 7)] }),
            )
        })
        .collect();
    let inv = json!({
        "machines": machines,
        "instances": { "vpn": { "module": { "name": "wiremesh", "input": "wiremesh" }, "roles": {
            "peer": { "tags": { "all": {}, "g3": { "settings": { "mtu": 1300 } } } }
        } } }
    });
    let r = ok(inv);
    assert_eq!(members(&r, "vpn", "peer").len(), 3000);
    assert_eq!(settings(&r, "m00003", "vpn", "peer")["mtu"], 1300);
    assert_eq!(settings(&r, "m00004", "vpn", "peer")["mtu"], 1420);
}

#[test]
fn malformed_catalogs_name_the_path() {
    let cases: Vec<(&str, &str, &str)> = vec![
        ("[]", "", "expected an object"),
        ("{\"self\": []}", "self", "expected an object"),
        ("{\"self\": {\"m\": 1}}", "self.m", "expected an object"),
        ("{\"self\": {\"m\": \"other\"}}", "self.m", "alias"),
        (
            "{\"self\": {\"m\": \"=nowhere\"}}",
            "self.m",
            "=<input>/<moduleName>",
        ),
        (
            "{\"self\": {\"m\": \"=self/n\"}}",
            "self.m",
            "not in the catalog",
        ),
        (
            "{\"self\": {\"m\": \"=self/n\", \"n\": \"=self/m\"}}",
            "self.m",
            "cycle",
        ),
        ("{\"self\": {\"m\": \"=self/m\"}}", "self.m", "cycle"),
        (
            "{\"a\": {\"m\": \"=b/m\"}, \"b\": {\"m\": \"=c/m\"}, \"c\": {\"m\": \"=a/m\"}}",
            "a.m",
            "cycle",
        ),
        ("{\"self\": {\"m\": {\"roles\": {}}}}", "self.m", "manifest"),
        (
            "{\"self\": {\"m\": {\"manifest\": {\"name\": \"m\"}}}}",
            "self.m",
            "Role behavior of service 'm' must be defined.",
        ),
        (
            "{\"self\": {\"m\": {\"manifest\": {\"name\": \"m\"}, \"roles\": {\"r\": {\"interface\": {\"o\": {\"type\": {\"type\": \"string\"}}}}}}}}",
            "self.m.roles.r.interface.o.type.type",
            "Did you mean `str`?",
        ),
        (
            "{\"self\": {\"m\": {\"manifest\": {\"name\": \"m\"}, \"roles\": {\"r\": {\"interface\": {\"o\": {\"type\": {\"type\": \"listOf\"}}}}}}}}",
            "self.m.roles.r.interface.o.type",
            "needs `of`",
        ),
        (
            "{\"self\": {\"m\": {\"manifest\": {\"name\": \"m\"}, \"roles\": {\"r\": {\"interface\": {\"o\": {\"type\": {\"type\": \"int\"}, \"defualt\": 1}}}}}}}",
            "self.m.roles.r.interface.o.defualt",
            "Did you mean `default`?",
        ),
        (
            "{\"self\": {\"m\": {\"manifest\": {\"name\": \"m\"}, \"roles\": {\"r\": {\"interface\": {\"o\": {\"type\": {\"type\": \"int\"}, \"default\": \"1\"}}}}}}}",
            "self.m.roles.r.interface.o.default",
            "signed integer",
        ),
        (
            "{\"self\": {\"m\": {\"manifest\": {\"name\": \"m\"}, \"roles\": {\"r\": {\"interface\": {\"o\": {\"type\": {\"type\": \"str\", \"format\": \"cidr4\"}}}}}}}}",
            "self.m.roles.r.interface.o.type.format",
            "Formats",
        ),
        (
            "{\"self\": {\"m\": {\"manifest\": {\"name\": \"m\", \"constraints\": {\"roles\": {\"x\": {\"minMachines\": 1}}}}, \"roles\": {\"r\": {}}}}}",
            "self.m.manifest.constraints.roles.x",
            "does not define",
        ),
        (
            "{\"self\": {\"m\": {\"manifest\": {\"name\": \"m\", \"constraints\": {\"maxInstances\": -1}}, \"roles\": {}}}}",
            "self.m.manifest.constraints.maxInstances",
            "non-negative integer",
        ),
        (
            "{\"self\": {\"m\": {\"manifest\": {\"name\": \"m\"}, \"roles\": {\"r\": {\"interface\": {\"o\": {\"type\": {\"type\": \"enum\", \"values\": [[1]]}}}}}}}}",
            "self.m.roles.r.interface.o.type.values[0]",
            "string, number",
        ),
        ("{\"self\": ", "self", "not valid JSON"),
    ];
    for (text, path, expected) in cases {
        let e = Catalog::from_json(text).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidCatalog, "{text}");
        assert_eq!(e.path, path, "{text}: {}", e.message);
        assert!(e.message.contains(expected), "{text}: {}", e.message);
    }
}

#[test]
fn catalog_comments_and_aliases() {
    let catalog = Catalog::from_json(
        r#"{"_comment": "x", "a": {"_note": 1, "m": {"_c": 1, "manifest": {"name": "a/m", "categories": ["x"]}, "roles": {"r": {"description": "d", "interface": {"o": {"type": {"type": "int", "_c": 1}, "default": 1, "description": "d", "example": 2}}}}}},
            "b": {"m2": "=c/m3"}, "c": {"m3": "=a/m"}}"#,
    )
    .unwrap();
    assert_eq!(catalog.inputs(), ["a", "b", "c"]);
    assert_eq!(catalog.module("b", "m2").unwrap().manifest.name, "a/m");
    assert_eq!(
        catalog.module("b", "m2").unwrap().defaults("r"),
        Some(json!({ "o": 1 }))
    );
    assert!(catalog.module("a", "_note").is_none());
}

/// Drops a deeply nested list iteratively (serde_json's own drop recurses).
fn unwind(mut value: Value) {
    while let Value::Array(mut items) = value {
        value = items.pop().unwrap_or(Value::Null);
    }
}

#[test]
fn values_built_in_code_deeper_than_any_parser_allows_are_errors_too() {
    let mut deep = json!("100.100.0.0/24");
    for _ in 0..200_000 {
        deep = Value::Array(vec![deep]);
    }
    let mut inv = wiremesh(json!({ "peer": { "settings": { "routes": [] } } }));
    inv["instances"]["vpn"]["roles"]["peer"]["settings"]["routes"] = deep;
    let result = wiremesh_inventory::resolve_value(&inv, &catalog(), &ResolveOptions::default());
    let e = result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidSettingType);
    assert!(e.message.len() < 1000, "{}", e.message.len());
    unwind(inv["instances"]["vpn"]["roles"]["peer"]["settings"]["routes"].take());

    let mut ty = json!({ "type": "str" });
    for _ in 0..100 {
        ty = json!({ "type": "listOf", "of": ty });
    }
    let catalog = json!({ "self": { "m": { "manifest": { "name": "m" }, "roles": { "r": { "interface": { "o": { "type": ty } } } } } } });
    let e = Catalog::from_value(&catalog).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidCatalog);
    assert!(e.message.contains("nested deeper than 32"), "{}", e.message);
}

// Inputs whose cost could grow with the product of two of their sizes: each must cost about
// what writing it cost. (Completion is the check; the speed is in the criterion benchmark.)

#[test]
fn a_long_unknown_machine_name_gets_no_quadratic_suggestion_search() {
    let known = "a".repeat(200_000);
    let typo = format!("b{}", &known[1..]);
    let e = err(json!({
        "machines": { known: {} },
        "instances": { "vpn": { "module": { "name": "wiremesh", "input": "wiremesh" }, "roles": {
            "peer": { "machines": { typo.clone(): {} } }
        } } }
    }));
    assert_eq!(e.kind, ErrorKind::UnknownMachine);
    assert!(
        !e.message.contains("Did you mean"),
        "no hint for a name this long"
    );
    assert!(e.path.ends_with(&typo));
}

#[test]
fn many_role_tags_and_many_members_do_not_multiply() {
    let machines: serde_json::Map<String, Value> =
        (0..2000).map(|i| (format!("m{i}"), json!({}))).collect();
    let mut tags: serde_json::Map<String, Value> = (0..100_000)
        .map(|i| (format!("t{i}"), json!({ "settings": {} })))
        .collect();
    tags.insert("all".into(), json!({ "settings": { "mtu": 1400 } }));
    let r = ok(json!({
        "machines": machines,
        "instances": { "vpn": { "module": { "name": "wiremesh", "input": "wiremesh" }, "roles": {
            "peer": { "tags": tags }
        } } }
    }));
    assert_eq!(members(&r, "vpn", "peer").len(), 2000);
    assert_eq!(settings(&r, "m1999", "vpn", "peer")["mtu"], 1400);
    assert_eq!(r.warnings.len(), 100_000);
}

#[test]
fn many_attribute_keys_across_many_layers_do_not_multiply() {
    let own: Vec<String> = (0..20_000).map(|i| format!("t{i}")).collect();
    let tags: serde_json::Map<String, Value> = own
        .iter()
        .map(|t| {
            (
                t.clone(),
                json!({ "settings": { "networks": { t.clone(): { "ssid": t } } } }),
            )
        })
        .collect();
    let r = ok(json!({
        "machines": { "a": { "tags": own } },
        "instances": { "w": { "module": { "name": "wifi", "input": "self" }, "roles": {
            "default": { "tags": tags }
        } } }
    }));
    let networks = &settings(&r, "a", "w", "default")["networks"];
    assert_eq!(networks.as_object().map(|n| n.len()), Some(20_000));
    assert_eq!(networks["t7"], json!({ "autoConnect": true, "ssid": "t7" }));
}

#[test]
fn results_beyond_the_limit_are_refused_with_the_role_that_crossed_it() {
    // 1,000 instances tagging `all` of 1,001 machines: a few kB of instances asking for a million
    // merged settings.
    let machines: serde_json::Map<String, Value> =
        (0..1001).map(|i| (format!("m{i:04}"), json!({}))).collect();
    let instances: serde_json::Map<String, Value> = (0..1000)
        .map(|k| {
            (
                format!("i{k:04}"),
                json!({ "module": { "name": "wiremesh", "input": "wiremesh" }, "roles": { "peer": { "tags": ["all"] } } }),
            )
        })
        .collect();
    let e = err(json!({ "machines": machines, "instances": instances }));
    assert_eq!(e.kind, ErrorKind::InputTooLarge);
    assert_eq!(e.path, "instances.i0999.roles.peer");
    assert!(
        e.message
            .contains(&format!("at most {}", wiremesh_inventory::MAX_RESULTS)),
        "{}",
        e.message
    );
}

#[test]
fn long_enums_and_long_lists_of_them_do_not_multiply() {
    let values: Vec<Value> = (0..100_000).map(|i| json!(format!("v{i}"))).collect();
    let catalog = Catalog::from_value(&json!({ "self": { "m": {
        "manifest": { "name": "self/m" },
        "roles": { "r": { "interface": { "picks": {
            "type": { "type": "listOf", "of": { "type": "enum", "values": values } }, "default": []
        } } } }
    } } }))
    .unwrap();
    let picks: Vec<Value> = (0..100_000)
        .map(|i| json!(format!("v{}", 99_999 - i)))
        .collect();
    let mut inv = json!({
        "machines": { "a": {} },
        "instances": { "x": { "module": { "name": "m", "input": "self" }, "roles": { "r": {
            "machines": { "a": { "settings": { "picks": picks } } }
        } } } }
    });
    let r = resolve(&inv.to_string(), &catalog, &ResolveOptions::default()).unwrap();
    assert_eq!(settings(&r, "a", "x", "r")["picks"][0], "v99999");

    inv["instances"]["x"]["roles"]["r"]["machines"]["a"]["settings"]["picks"][7] = json!(1);
    let e = resolve(&inv.to_string(), &catalog, &ResolveOptions::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidSettingType);
    assert_eq!(e.path, "instances.x.roles.r.machines.a.settings.picks[7]");
    assert!(
        e.message.contains(r#""v19" and 99980 more`"#),
        "{}",
        &e.message[..300]
    );
}
