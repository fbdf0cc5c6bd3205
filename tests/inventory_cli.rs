//! `wiremesh inventory resolve` end to end: the real binary on the example, on a clan inventory
//! with zerotier, wireguard and wiremesh instances, and on broken inventories, compared with the
//! expected outputs in tests/fixtures/inventory/.

use std::path::Path;

use wiremesh_tests::{run, wiremesh, workspace_file};

const FIXTURES: &str = "tests/fixtures/inventory";

fn expected(relative: &str) -> String {
    let path = workspace_file(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Asserts a successful run whose standard output is the fixture `name` in tests/fixtures/inventory.
fn assert_prints(output: &std::process::Output, name: &str) {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
    assert_eq!(stdout(output), expected(&format!("{FIXTURES}/{name}")));
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

fn resolve(args: &[&str]) -> std::process::Output {
    let mut all = vec!["inventory", "resolve"];
    all.extend_from_slice(args);
    run(&wiremesh(), &all, None)
}

/// `inventory resolve --inventory - ARGS` with `inventory` on standard input.
fn resolve_stdin(inventory: &[u8], args: &[&str]) -> std::process::Output {
    let mut all = vec!["inventory", "resolve", "--inventory", "-"];
    all.extend_from_slice(args);
    run(&wiremesh(), &all, Some(inventory))
}

/// Standard output parsed as JSON.
fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

#[test]
fn resolves_the_readme_example() {
    let out = resolve(&["--inventory", "examples/inventory.json"]);
    assert_prints(&out, "example.expected.json");
    assert_eq!(stderr(&out), "");
}

#[test]
fn example_output_has_the_issue_shape() {
    let out = resolve(&["--inventory", "examples/inventory.json"]);
    let value = json(&out);
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["instances", "machineTags", "machines", "warnings"]);
    assert_eq!(
        value["instances"]["my-vpn"]["roles"]["peer"]["machines"],
        serde_json::json!(["desktop", "laptop", "server"])
    );
    assert_eq!(
        value["instances"]["my-vpn"]["roles"]["controller"]["machines"],
        serde_json::json!(["server"])
    );
    assert_eq!(
        value["machines"]["server"][0]["settings"]["dynamicIp"]["enable"],
        true
    );
    assert_eq!(
        value["machines"]["laptop"][0]["settings"]["ipRanges"],
        serde_json::json!(["all"])
    );
    // Every object key sorted, 2-space indentation.
    assert_keys_sorted(&stdout(&out));
    assert!(stdout(&out).contains("\n  \"instances\": {\n    \"my-vpn\": {\n      \"module\": {"));
}

/// Checks on the text that every object's keys are sorted and indented by 2 spaces per level
/// (a parsed `Value` may sort its keys itself). Pretty JSON has one key per line; the keys of one
/// object share its nesting level, which the `{`/`[` line ends and `}`/`]` line starts track.
fn assert_keys_sorted(text: &str) {
    let mut last_key: Vec<Option<String>> = vec![None];
    for line in text.lines() {
        let body = line.trim_start();
        if body.starts_with('}') || body.starts_with(']') {
            last_key.pop();
        }
        let depth = last_key.len() - 1;
        assert_eq!(
            line.len() - body.len(),
            2 * depth,
            "indentation of {line:?}"
        );
        let mut strings = serde_json::Deserializer::from_str(body).into_iter::<String>();
        if let Some(Ok(key)) = strings.next()
            && body[strings.byte_offset()..].starts_with(": ")
        {
            let previous = last_key.last_mut().expect("inside an object");
            if let Some(previous) = previous {
                assert!(*previous < key, "{key:?} follows {previous:?}");
            }
            *previous = Some(key);
        }
        if body.ends_with('{') || body.ends_with('[') {
            last_key.push(None);
        }
    }
    assert_eq!(last_key.len(), 1, "unbalanced output");
}

#[test]
fn the_key_order_check_sees_text_order() {
    assert_keys_sorted(
        "{\n  \"a\": [\n    \"z\",\n    \"b\"\n  ],\n  \"b\": {\n    \"y\": 1,\n    \"z\": {}\n  }\n}",
    );
    for bad in [
        "{\n  \"b\": 1,\n  \"a\": 2\n}",
        "{\n  \"a\": {\n    \"y\": 1,\n    \"x\": 2\n  }\n}",
        "{\n    \"a\": 1\n}",
    ] {
        let result = std::panic::catch_unwind(|| assert_keys_sorted(bad));
        assert!(result.is_err(), "{bad} passed");
    }
}

#[test]
fn reads_standard_input() {
    let text = std::fs::read(workspace_file("examples/inventory.json")).unwrap();
    let out = resolve_stdin(&text, &[]);
    assert_prints(&out, "example.expected.json");
}

#[test]
fn resolves_a_clan_inventory_with_a_module_catalog_and_only() {
    let inventory = format!("{FIXTURES}/clan.json");
    let modules = format!("{FIXTURES}/clan-core-modules.json");
    let out = resolve(&[
        "--inventory",
        &inventory,
        "--modules",
        &modules,
        "--only",
        "zerotier",
        "wireguard",
        "wiremesh",
    ]);
    assert_prints(&out, "clan.expected.json");
    assert_keys_sorted(&stdout(&out));
}

#[test]
fn without_only_other_services_need_a_catalog() {
    let inventory = format!("{FIXTURES}/clan.json");
    let out = resolve(&["--inventory", &inventory]);
    assert_eq!(out.status.code(), Some(1));
    let value: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("error JSON on stdout");
    assert_eq!(value["error"]["kind"], "unknown-module");
    assert_eq!(value["error"]["path"], "instances.borgbackup.module.name");
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--only"),
        "{value}"
    );
}

#[test]
fn text_format_prints_a_table() {
    let inventory = format!("{FIXTURES}/clan.json");
    let out = resolve(&[
        "--inventory",
        &inventory,
        "--only",
        "wiremesh",
        "--format",
        "text",
    ]);
    assert_prints(&out, "clan-only-wiremesh.expected.txt");
}

#[test]
fn every_error_fixture_gives_its_error_json_and_exit_1() {
    let dir = workspace_file(&format!("{FIXTURES}/errors"));
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p.to_string_lossy().ends_with(".expected.json")
        })
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 6,
        "error fixtures missing in {}",
        dir.display()
    );
    for input in inputs {
        let stem = input.file_stem().unwrap().to_string_lossy().to_string();
        let relative = format!("{FIXTURES}/errors/{stem}.json");
        let out = resolve(&["--inventory", &relative]);
        assert_eq!(out.status.code(), Some(1), "{relative}");
        assert_eq!(
            stdout(&out),
            expected(&format!("{FIXTURES}/errors/{stem}.expected.json")),
            "{relative}"
        );
        assert_keys_sorted(&stdout(&out));
        let value = json(&out);
        assert_eq!(
            value["error"]["kind"],
            stem.as_str(),
            "the fixture is named after its error kind"
        );
        assert!(
            !value["error"]["path"].as_str().unwrap().is_empty(),
            "{relative}: the error has a path"
        );

        let text = resolve(&["--inventory", &relative, "--format", "text"]);
        assert_eq!(text.status.code(), Some(1), "{relative}");
        assert_eq!(stdout(&text), "", "{relative}: text errors go to stderr");
        assert!(
            stderr(&text).starts_with(&format!("error [{stem}] at `")),
            "{}",
            stderr(&text)
        );
    }
}

#[test]
fn warnings_are_in_the_json_and_on_stderr() {
    let inv = br#"{"machines": {"a": {}}, "instances": {"vpn": {"module": {"name": "wiremesh", "input": "wiremesh"}, "roles": {"peer": {"tags": ["all", "nobody"]}}}}}"#;
    let out = resolve_stdin(inv, &[]);
    assert_eq!(out.status.code(), Some(0));
    let value = json(&out);
    assert_eq!(
        value["warnings"],
        serde_json::json!([{ "instance": "vpn", "kind": "empty-tag", "role": "peer", "tag": "nobody" }])
    );
    assert_eq!(
        stderr(&out),
        "warning: Service instance 'vpn': - peer tags: no machine with tag 'nobody' found.\n"
    );
}

#[test]
fn wiremesh_input_selects_the_built_in_module() {
    let inv = br#"{"machines": {"a": {}}, "instances": {"vpn": {"module": {"name": "wiremesh", "input": "mesh-flake"}, "roles": {"peer": {"tags": ["all"]}}}}}"#;
    let out = resolve_stdin(inv, &[]);
    assert_eq!(out.status.code(), Some(1));
    let out = resolve_stdin(inv, &["--wiremesh-input", "mesh-flake"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn unreadable_and_invalid_files_are_errors_with_a_message() {
    let out = resolve(&[
        "--inventory",
        "tests/fixtures/inventory/does-not-exist.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let value = json(&out);
    assert_eq!(value["error"]["kind"], "unreadable-input");
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot read tests/fixtures/inventory/does-not-exist.json"),
        "{value}"
    );

    let out = resolve_stdin(b"\xff\xfe{}", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("is not UTF-8"), "{}", stdout(&out));

    let out = resolve(&[
        "--inventory",
        "examples/inventory.json",
        "--modules",
        "examples/inventory.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let value = json(&out);
    assert_eq!(value["error"]["kind"], "invalid-catalog");
    assert!(value["error"]["message"].as_str().unwrap().starts_with("examples/inventory.json: module catalog at `instances.my-vpn.module`: unknown key `module`"), "{value}");
}

#[test]
fn only_one_input_reads_standard_input() {
    let out = resolve_stdin(b"{}", &["--modules", "-"]);
    assert_eq!(out.status.code(), Some(1));
    let value = json(&out);
    assert_eq!(value["error"]["kind"], "unreadable-input");
    assert_eq!(
        value["error"]["message"],
        "--inventory and --modules cannot both read standard input (-)"
    );
}

#[test]
fn the_default_inventory_is_inventory_json_in_the_working_directory() {
    let dir = workspace_file("examples");
    let out = std::process::Command::new(wiremesh())
        .args(["inventory", "resolve"])
        .current_dir(Path::new(&dir))
        .output()
        .unwrap();
    assert_prints(&out, "example.expected.json");
}

#[test]
fn usage_errors_exit_2() {
    let out = resolve(&["--format", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("yaml"), "{}", stderr(&out));
}

#[test]
fn text_output_escapes_control_characters_from_the_input() {
    let inventory = r#"{
        "machines": { "evil\u001b[2J": {}, "plain": {} },
        "instances": { "vpn\u0007": { "module": { "name": "wiremesh", "input": "wiremesh" },
            "roles": { "peer": { "tags": ["all", "\u001b]0;title\u0007"] } } } }
    }"#;
    let out = resolve_stdin(inventory.as_bytes(), &["--format", "text"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("evil\\u{1b}[2J  vpn\\u{7}"), "{text}");
    assert!(
        text.contains("tag '\\u{1b}]0;title\\u{7}' found."),
        "{text}"
    );

    let broken = r#"{ "instances": { "vpn": { "module": { "name": "wiremesh", "input": "wiremesh" },
        "roles": { "peer": { "machines": { "x\u001b[2J": {} } } } } } }"#;
    let out = resolve_stdin(broken.as_bytes(), &["--format", "text"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains('\u{1b}'), "{:?}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown machine reference 'x\\u{1b}[2J'"),
        "{}",
        stderr(&out)
    );
}
