//! `wiremesh inventory resolve`: reads an inventory and an optional module catalog, resolves them
//! with `wiremesh_inventory::resolve` and prints the result as JSON or as a table.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use wiremesh_inventory::{
    Catalog, ErrorKind, MAX_INPUT_BYTES, Resolution, ResolveError, ResolveOptions, json_compact,
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Resolve a Clan inventory: which machine holds which role of which instance, with which
    /// final settings. Prints JSON (every key sorted) or a table; on an error, exits 1.
    Resolve(ResolveArgs),
}

#[derive(clap::Args)]
pub struct ResolveArgs {
    /// The inventory (Clan's inventory.json shape); `-` reads standard input.
    #[arg(long, value_name = "FILE|-", default_value = "inventory.json")]
    inventory: PathBuf,
    /// A module catalog with the role interfaces of clan services other than wiremesh.
    #[arg(long, value_name = "FILE")]
    modules: Option<PathBuf>,
    /// Resolve only instances of these module names; ignore all others.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    only: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// The module.input under which the built-in wiremesh module is found.
    #[arg(long, value_name = "NAME", default_value = wiremesh_inventory::builtin::DEFAULT_INPUT)]
    wiremesh_input: String,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Json,
    Text,
}

pub fn run(cmd: Command) -> ExitCode {
    match cmd {
        Command::Resolve(args) => resolve(args),
    }
}

fn resolve(args: ResolveArgs) -> ExitCode {
    match load_and_resolve(&args) {
        Ok(resolution) => {
            match args.format {
                Format::Json => {
                    for warning in &resolution.warnings {
                        eprintln!("warning: {}", printable(&warning.to_string()));
                    }
                    println!("{}", resolution.to_json_pretty())
                }
                Format::Text => print!("{}", table(&resolution)),
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            match args.format {
                Format::Json => println!("{}", err.to_json_pretty()),
                Format::Text => eprintln!("{}", error_text(&err)),
            }
            ExitCode::FAILURE
        }
    }
}

fn load_and_resolve(args: &ResolveArgs) -> Result<Resolution, ResolveError> {
    if args.inventory.as_os_str() == "-"
        && args.modules.as_ref().is_some_and(|m| m.as_os_str() == "-")
    {
        return Err(ResolveError {
            kind: ErrorKind::UnreadableInput,
            message: "--inventory and --modules cannot both read standard input (-)".into(),
            path: String::new(),
        });
    }
    let inventory = read_input(&args.inventory, "--inventory")?;
    let catalog = match &args.modules {
        None => Catalog::new(),
        Some(path) => {
            let text = read_input(path, "--modules")?;
            Catalog::from_json(&text).map_err(|e| in_file(e, path))?
        }
    };
    let opts = ResolveOptions {
        only: args.only.clone(),
        wiremesh_input: args.wiremesh_input.clone(),
    };
    wiremesh_inventory::resolve(&inventory, &catalog, &opts)
        .map_err(|e| in_file(e, &args.inventory))
}

fn in_file(err: ResolveError, path: &std::path::Path) -> ResolveError {
    ResolveError {
        message: format!("{}: {}", display_name(path), err.message),
        ..err
    }
}

fn display_name(path: &std::path::Path) -> String {
    if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

/// Reads a whole file (or stdin for `-`), refusing more than MAX_INPUT_BYTES and non-UTF-8 text.
fn read_input(path: &std::path::Path, flag: &str) -> Result<String, ResolveError> {
    let name = display_name(path);
    let fail = |kind: ErrorKind, message: String| ResolveError {
        kind,
        message,
        path: String::new(),
    };
    let mut bytes = Vec::new();
    let limit = MAX_INPUT_BYTES as u64 + 1;
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    read.map_err(|e| {
        fail(
            ErrorKind::UnreadableInput,
            format!("cannot read {name} (the {flag} file): {e}"),
        )
    })?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(fail(
            ErrorKind::InputTooLarge,
            format!("{name} is larger than {MAX_INPUT_BYTES} bytes"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        fail(
            ErrorKind::UnreadableInput,
            format!(
                "{name} is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

fn error_text(err: &ResolveError) -> String {
    let at = if err.path.is_empty() {
        String::new()
    } else {
        format!(" at `{}`", err.path)
    };
    printable(&format!("error [{}]{at}: {}", err.kind, err.message))
}

/// Text for a terminal: control characters from the input (escape sequences, NUL, ...) are
/// written escaped (`\u{1b}`), line breaks of multi-line messages are kept.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A table per machine and role with compact settings, then the machines in no instance, then
/// warnings.
fn table(resolution: &Resolution) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "MACHINE".into(),
        "INSTANCE".into(),
        "MODULE".into(),
        "ROLE".into(),
        "SETTINGS".into(),
    ]];
    let mut idle = Vec::new();
    for (machine, roles) in &resolution.machines {
        if roles.is_empty() {
            idle.push(printable(machine));
        }
        for entry in roles {
            let module = match &entry.module.input {
                Some(input) => format!("{input}/{}", entry.module.name),
                None => entry.module.name.clone(),
            };
            rows.push([
                printable(machine),
                printable(&entry.instance),
                printable(&module),
                printable(&entry.role),
                json_compact(&entry.settings),
            ]);
        }
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (w, cell) in widths.iter().zip(row.iter()) {
            out.push_str(cell);
            out.push_str(&" ".repeat(w - cell.chars().count() + 2));
        }
        out.push_str(&row[4]);
        out.push('\n');
    }
    if !idle.is_empty() {
        out.push_str(&format!("\nin no instance: {}\n", idle.join(", ")));
    }
    for (machine, tags) in &resolution.machine_tags {
        let line = format!("tags of {machine}: {}", tags.join(", "));
        out.push_str(&printable(&line));
        out.push('\n');
    }
    for warning in &resolution.warnings {
        out.push_str(&printable(&format!("warning: {warning}")));
        out.push('\n');
    }
    out
}
