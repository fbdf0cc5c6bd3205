//! Finding an instance's module: the built-in wiremesh module or a catalog entry, with Clan's
//! error texts for an unknown input or module name.

use std::collections::BTreeSet;

use crate::ResolveOptions;
use crate::builtin;
use crate::catalog::{CLAN_CORE_INPUT, Catalog};
use crate::error::{ErrorKind, ResolveError};
use crate::inventory::ModuleSpec;
use crate::module::Module;
use crate::path::Path;
use crate::suggest;

/// The module an instance names: the built-in wiremesh module under its input, else the catalog's
/// (`input = "clan-core"` falls back to the null input's modules). Errors use Clan's wording.
pub(crate) fn find_module<'c>(
    spec: &ModuleSpec,
    catalog: &'c Catalog,
    opts: &ResolveOptions,
    at: &Path,
) -> Result<&'c Module, ResolveError> {
    if spec.input == Some(opts.wiremesh_input.as_str()) && spec.name == builtin::MODULE_NAME {
        return Ok(builtin::wiremesh_module());
    }
    let at_module = at.key("module");
    let requested = spec.input.unwrap_or(CLAN_CORE_INPUT);
    // `input = "clan-core"` reaches the same modules as null unless the catalog lists it apart.
    let input = if !catalog.has_input(requested) && requested == "clan-core" {
        CLAN_CORE_INPUT
    } else {
        requested
    };
    // The built-in module's input provides it even when the catalog does not list that input.
    // "<clan-core>" is the catalog's name for the null input, not a flake input one can name.
    let builtin_input = input == opts.wiremesh_input;
    let provided = (catalog.has_input(input) && requested != CLAN_CORE_INPUT) || builtin_input;
    if spec.input.is_some() && !provided {
        return Err(ResolveError::new(
            ErrorKind::UnknownModule,
            at_module.key("input").render(),
            format!(
                "Flake doesn't provide input with name '{requested}'\n\nChoose one of the following inputs (from the module catalog and the built-in wiremesh module):\n- {}\n\nTo import any official module from '<clan-core>' remove the 'input' attribute from the module definition.{}",
                known_inputs(catalog, opts).join("\n- "),
                wiremesh_hint(spec, opts)
            ),
        ));
    }
    catalog.module(input, spec.name).ok_or_else(|| {
        let provider = match spec.input {
            None => "clan-core".to_string(),
            Some(i) => format!("flake input '{i}'"),
        };
        let mut names = catalog.module_names(input);
        if builtin_input {
            names.push(builtin::MODULE_NAME);
            names.sort_unstable();
            names.dedup();
        }
        ResolveError::new(
            ErrorKind::UnknownModule,
            at_module.key("name").render(),
            format!(
                "{provider} doesn't provide clan-module with name '{}'.{}\n\nRemove `module.input` (or set module.input = null) - to use a <clan-core> module.\nSet `module.input = \"self\"` if the module is defined in your own flake.\nSet `module.input = \"<flake-input>\"` if the module is defined by a flake input called `<flake-input>`.{}\n{}",
                spec.name,
                suggest::hint(spec.name, names.iter().copied()),
                wiremesh_hint(spec, opts),
                if names.is_empty() {
                    format!("The module catalog has no modules for '{input}': give its interface with --modules FILE, or resolve only some modules with --only NAME...")
                } else {
                    format!("Modules of '{input}': {}", suggest::list(names.iter().copied()))
                }
            ),
        )
    })
}

fn known_inputs(catalog: &Catalog, opts: &ResolveOptions) -> Vec<String> {
    let mut inputs: BTreeSet<String> = catalog.inputs().into_iter().map(str::to_string).collect();
    inputs.remove(CLAN_CORE_INPUT);
    inputs.insert(opts.wiremesh_input.clone());
    inputs.into_iter().collect()
}

fn wiremesh_hint(spec: &ModuleSpec, opts: &ResolveOptions) -> String {
    if spec.name == builtin::MODULE_NAME {
        format!(
            "\nThe built-in wiremesh module is used with module.input = \"{}\" (see --wiremesh-input).",
            opts.wiremesh_input
        )
    } else {
        String::new()
    }
}
