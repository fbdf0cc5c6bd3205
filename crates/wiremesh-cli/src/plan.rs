//! `wiremesh plan`: resolves the inventory, reads the members' public keys from a Clan vars
//! directory and writes one agent configuration per mesh member and one controller configuration
//! per controller (`wiremesh_core::plan`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wiremesh_core::files::read_text_bounded;
use wiremesh_core::keys::MAX_KEY_FILE_BYTES;
use wiremesh_core::plan::{Plan, plan};
use wiremesh_inventory::{Catalog, MAX_INPUT_BYTES, Resolution, ResolveOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    inputs: Inputs,
    /// Write `<DIR>/<machine>.json` for every mesh member and `<DIR>/<machine>.controller.json`
    /// for every controller.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the configurations as one JSON object keyed by machine instead of a summary.
    #[arg(long)]
    json: bool,
    /// Write an /etc/hosts fragment naming every member `<machine>.<instance>`: its IPv6
    /// address, and its IPv4 address when static (a leased one is not known before it runs).
    #[arg(long, value_name = "FILE")]
    hosts: Option<PathBuf>,
}

/// Where the plan's inputs come from; shared with `netmap build`.
#[derive(clap::Args)]
pub struct Inputs {
    /// The inventory (Clan's inventory.json shape).
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// The wiremesh instance.
    #[arg(long)]
    pub instance: String,
    /// The directory holding `vars/` with the members' public keys (a clan repository).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub keys: PathBuf,
    /// The module.input under which the built-in wiremesh module is found.
    #[arg(long, value_name = "NAME", default_value = wiremesh_inventory::builtin::DEFAULT_INPUT)]
    pub wiremesh_input: String,
}

/// Resolves the inventory and plans the instance; the errors are printable lines.
pub fn compute(inputs: &Inputs) -> Result<Plan, Vec<String>> {
    let resolution = resolve(inputs).map_err(|e| vec![e])?;
    for warning in &resolution.warnings {
        eprintln!("warning: {warning}");
    }
    let roles = instance_roles(&resolution, &inputs.instance).map_err(|e| vec![e])?;
    // The plan error names the file itself.
    let mut read_key = |path: &Path| {
        read_text_bounded(path, MAX_KEY_FILE_BYTES).map_err(|e| e.problem.to_string())
    };
    plan(&inputs.instance, &roles, &inputs.keys, &mut read_key)
        .map_err(|errors| errors.iter().map(|e| format!("error: {e}")).collect())
}

pub fn run(args: Args) -> ExitCode {
    let plan = match compute(&args.inputs) {
        Ok(plan) => plan,
        Err(errors) => {
            for e in &errors {
                eprintln!("wiremesh plan: {e}");
            }
            eprintln!("wiremesh plan: nothing written");
            return ExitCode::FAILURE;
        }
    };
    for note in &plan.notes {
        eprintln!("note: {note}");
    }
    if let Some(Err(e)) = args.out.as_deref().map(|dir| write_configs(dir, &plan)) {
        return fail(&e);
    }
    if let Some(path) = &args.hosts {
        let text = hosts(&plan, &args.inputs.instance);
        if let Err(e) = crate::keys::write_atomic(path, text.as_bytes(), 0o644, true) {
            return fail(&format!("cannot write {}: {e}", path.display()));
        }
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        if let Err(e) = print_all(&plan) {
            return fail(&e.to_string());
        }
    } else {
        print!("{}", summary(&plan));
    }
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("wiremesh plan: {message}");
    ExitCode::FAILURE
}

fn resolve(args: &Inputs) -> Result<Resolution, String> {
    let name = args.inventory.display();
    let text = read_text_bounded(&args.inventory, MAX_INPUT_BYTES).map_err(|e| e.to_string())?;
    let opts = ResolveOptions {
        only: vec![wiremesh_inventory::builtin::MODULE_NAME.to_string()],
        wiremesh_input: args.wiremesh_input.clone(),
    };
    // The message names the JSON path itself.
    wiremesh_inventory::resolve(&text, &Catalog::new(), &opts)
        .map_err(|e| format!("{name}: {}", e.message))
}

type Roles = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

/// machine → role → settings for one instance.
fn instance_roles(resolution: &Resolution, instance: &str) -> Result<Roles, String> {
    if !resolution.instances.contains_key(instance) {
        let known: Vec<&str> = resolution.instances.keys().map(String::as_str).collect();
        return Err(format!(
            "no wiremesh instance {instance:?} in the inventory; wiremesh instances: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    let mut roles = Roles::new();
    for (machine, entries) in &resolution.machines {
        for entry in entries.iter().filter(|e| e.instance == instance) {
            roles
                .entry(machine.clone())
                .or_default()
                .insert(entry.role.clone(), entry.settings.clone());
        }
    }
    Ok(roles)
}

/// One JSON object keyed by machine, each configuration built, written and dropped in turn so
/// that memory stays linear in the mesh size.
fn print_all(plan: &Plan) -> std::io::Result<()> {
    struct All<'p>(&'p Plan);
    impl serde::Serialize for All<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.configs().map(|c| (c.machine.clone(), c)))
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, &All(plan))?;
    writeln!(out)?;
    out.flush()
}

fn write_configs(dir: &Path, plan: &Plan) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for config in plan.configs() {
        let machine = &config.machine;
        let path = dir.join(format!("{machine}.json"));
        crate::keys::write_atomic(&path, config.to_json().as_bytes(), 0o644, true)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    for (machine, file) in &plan.controllers {
        if plan.machines.contains_key(&format!("{machine}.controller")) {
            return Err(format!(
                "machine {machine:?}.controller would overwrite the controller configuration of {machine:?}; rename one of them"
            ));
        }
        let path = dir.join(format!("{machine}.controller.json"));
        crate::keys::write_atomic(&path, file.to_json().as_bytes(), 0o644, true)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// One `<address> <machine>.<instance>` line per member address, in machine order.
fn hosts(plan: &Plan, instance: &str) -> String {
    let mut out = String::new();
    for (machine, member) in &plan.members {
        let name = format!("{machine}.{instance}");
        out.push_str(&format!("{} {name}\n", member.addresses.ipv6));
        if let Some(ipv4) = member.addresses.ipv4 {
            out.push_str(&format!("{ipv4} {name}\n"));
        }
    }
    out
}

fn summary(plan: &Plan) -> String {
    let mut out = String::from("machine\troles\tinterface\tport\tipv6\tipv4\tpeers\n");
    let peers = plan.members.len().saturating_sub(1);
    for (machine, c) in &plan.machines {
        let ipv4 = c.addresses.ipv4.map_or("-".to_string(), |a| a.to_string());
        out.push_str(&format!(
            "{machine}\t{}\t{}\t{}\t{}\t{ipv4}\t{peers}\n",
            c.roles.join(","),
            c.interface,
            c.listen_port,
            c.addresses.ipv6,
        ));
    }
    out
}
