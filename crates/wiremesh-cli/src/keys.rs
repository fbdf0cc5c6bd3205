//! `wiremesh keygen` and `wiremesh pubkey`: create key files and print their public halves, plus
//! the atomic writer the other subcommands share.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wiremesh_core::keys::{Identity, KeyFile, NetworkKey, permission_warning};

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Make the ed25519 network key (held by the controller) instead of a machine identity.
    #[arg(long)]
    network: bool,
    /// Where to write the key file (mode 0600).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace an existing file; without it, an existing key is never overwritten.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct PubkeyArgs {
    /// Print only the WireGuard public key (what `wg pubkey` prints for the same private key).
    #[arg(long, conflicts_with = "node")]
    wireguard: bool,
    /// Print only the ed25519 node public key.
    #[arg(long)]
    node: bool,
    /// An identity or network key file.
    file: PathBuf,
}

pub fn keygen(args: KeygenArgs) -> ExitCode {
    if args.out.exists() && !args.force {
        eprintln!(
            "wiremesh keygen: {} exists; refusing to replace a key (use --force)",
            args.out.display()
        );
        return ExitCode::FAILURE;
    }
    let (text, public) = if args.network {
        match NetworkKey::generate() {
            Ok(key) => (
                key.to_file_text(),
                format!("network-public-key = {}\n", key.public_key()),
            ),
            Err(e) => return fail(&format!("no randomness from the OS: {e}")),
        }
    } else {
        match Identity::generate() {
            Ok(id) => (id.to_file_text(), identity_publics(&id)),
            Err(e) => return fail(&format!("no randomness from the OS: {e}")),
        }
    };
    if let Err(e) = write_atomic(&args.out, text.as_bytes(), 0o600, args.force) {
        return fail(&format!("cannot write {}: {e}", args.out.display()));
    }
    print!("{public}");
    ExitCode::SUCCESS
}

pub fn pubkey(args: PubkeyArgs) -> ExitCode {
    if let Some(warning) = permission_warning(&args.file) {
        eprintln!("{warning}");
    }
    let file = match KeyFile::load(&args.file) {
        Ok(file) => file,
        Err(e) => return fail(&e.to_string()),
    };
    match file {
        KeyFile::Identity(id) if args.wireguard => println!("{}", id.wireguard_public_key()),
        KeyFile::Identity(id) if args.node => println!("{}", id.node_public_key()),
        KeyFile::Identity(id) => print!("{}", identity_publics(&id)),
        KeyFile::Network(_) if args.wireguard || args.node => {
            return fail(&format!(
                "{} is a network key; --wireguard and --node apply to machine identities",
                args.file.display()
            ));
        }
        KeyFile::Network(key) => println!("{}", key.public_key()),
    }
    ExitCode::SUCCESS
}

fn identity_publics(id: &Identity) -> String {
    format!(
        "wireguard-public-key = {}\nnode-public-key = {}\n",
        id.wireguard_public_key(),
        id.node_public_key()
    )
}

fn fail(message: &str) -> ExitCode {
    eprintln!("wiremesh: {message}");
    ExitCode::FAILURE
}

/// Writes `bytes` to `path` so that a reader sees the old file or the whole new one: a temporary
/// file in the same directory, created with `mode`, fsynced, moved to `path`, then the directory
/// fsynced. Without `replace` the move is a hard link, which fails if `path` exists, so a file
/// that appeared since any earlier check is still never overwritten.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        if replace {
            std::fs::rename(&tmp, path)?;
        } else {
            std::fs::hard_link(&tmp, path)?;
            std::fs::remove_file(&tmp)?;
        }
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
