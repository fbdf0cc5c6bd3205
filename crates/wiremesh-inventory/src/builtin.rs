//! wiremesh's own clan service interface, built in. It is data in the catalog format
//! (`wiremesh-module.json`, embedded here as [`WIREMESH_MODULE_JSON`]), so there is exactly one
//! definition of the roles, options, defaults and formats, which the Nix module can be checked
//! against.

use std::sync::OnceLock;

use crate::module::Module;
use crate::path::Path;

/// The catalog text of the built-in module.
pub const WIREMESH_MODULE_JSON: &str = include_str!("wiremesh-module.json");

/// The module name users write: `module.name = "wiremesh"`.
pub const MODULE_NAME: &str = "wiremesh";

/// The `module.input` that selects the built-in module unless `--wiremesh-input` says otherwise.
pub const DEFAULT_INPUT: &str = "wiremesh";

/// The built-in module, parsed once.
pub fn wiremesh_module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| {
        let value = serde_json::from_str(WIREMESH_MODULE_JSON)
            .expect("wiremesh-module.json is valid JSON (checked by a unit test)");
        crate::catalog::parse_module(&value, &Path::ROOT)
            .expect("wiremesh-module.json is a valid module (checked by a unit test)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_module_parses_and_has_the_issue_interface() {
        let module = wiremesh_module();
        assert_eq!(module.manifest.name, "wiremesh");
        assert_eq!(module.role_names(), ["controller", "peer"]);
        assert_eq!(
            module.defaults("controller"),
            Some(json!({
                "controlPort": 51821,
                "dynamicIp": {"enable": false, "range": null},
                "ipv4Network": null,
                "ipv6Network": null,
                "relay": {"enable": true, "memberMibPerHour": 10240, "memberRateMbit": 100, "port": 51822}
            }))
        );
        assert_eq!(
            module.defaults("peer"),
            Some(json!({
                "endpoints": [],
                "interface": null,
                "ipRanges": ["all"],
                "ipv4": null,
                "mtu": 1420,
                "persistentKeepalive": 25,
                "port": 51820,
                "routes": []
            }))
        );
        assert_eq!(module.defaults("moon"), None);
        assert!(
            module.roles["controller"].options["endpoint"]
                .default
                .is_none()
        );
    }
}
