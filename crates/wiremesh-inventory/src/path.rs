//! Locations inside a JSON document, written the way Nix prints option paths:
//! `instances.my-vpn.roles.peer.machines.laptop.settings.endpoints[1]`, with names that are not
//! plain identifiers quoted (`"<clan-core>".zerotier`). Paths are linked on the stack and only
//! rendered when an error needs them.

/// One step into a JSON value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A path as a chain of steps from the document root.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Option<Seg<'a>>,
}

impl<'a> Path<'a> {
    pub(crate) const ROOT: Path<'static> = Path {
        parent: None,
        seg: None,
    };

    pub(crate) fn key(&'a self, key: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Some(Seg::Key(key)),
        }
    }

    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Some(Seg::Index(index)),
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut at = Some(self);
        while let Some(p) = at {
            if let Some(seg) = p.seg {
                segs.push(seg);
            }
            at = p.parent;
        }
        segs.reverse();
        render_segs(&segs)
    }
}

fn render_segs(segs: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&quote_attr(key));
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Renders a path given as attribute names.
pub(crate) fn attr_path(keys: &[&str]) -> String {
    let segs: Vec<Seg<'_>> = keys.iter().map(|k| Seg::Key(k)).collect();
    render_segs(&segs)
}

/// Joins a rendered prefix and a rendered suffix path.
pub(crate) fn join(prefix: &str, suffix: &str) -> String {
    match (prefix.is_empty(), suffix.is_empty()) {
        (true, _) => suffix.to_string(),
        (_, true) => prefix.to_string(),
        _ if suffix.starts_with('[') => format!("{prefix}{suffix}"),
        _ => format!("{prefix}.{suffix}"),
    }
}

/// A Nix attribute name as written in a path: bare when it is an identifier, else quoted.
pub(crate) fn quote_attr(key: &str) -> String {
    let mut chars = key.chars();
    let bare = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''));
    if bare {
        key.to_string()
    } else {
        serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_nix_option_paths() {
        let root = Path::ROOT;
        let a = root.key("instances");
        let b = a.key("my-vpn");
        let c = b.key("<clan-core>");
        let d = c.index(3);
        let e = d.key("a.b");
        assert_eq!(e.render(), r#"instances.my-vpn."<clan-core>"[3]."a.b""#);
        assert_eq!(Path::ROOT.render(), "");
        assert_eq!(attr_path(&["x", "1y"]), r#"x."1y""#);
        assert_eq!(join("a.b", "[0]"), "a.b[0]");
        assert_eq!(join("a.b", "c"), "a.b.c");
        assert_eq!(join("", "c"), "c");
        assert_eq!(join("a", ""), "a");
    }
}
