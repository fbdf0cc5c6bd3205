//! `wiremesh netmap build|show|verify`: sign a netmap from the plan with the network key, print
//! one, and check one against a pinned network key, all offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use wiremesh_core::files::{read_bounded, read_text_bounded};
use wiremesh_core::keys::{MAX_KEY_FILE_BYTES, NetworkKey, NetworkPublicKey, permission_warning};
use wiremesh_core::netmap::{Flags, MAX_NETMAP_BYTES, Member, Netmap, NetmapContent, Rejection};
use wiremesh_core::plan::{CONTROLLER_ROLE, network_key_path};

use crate::plan::{Inputs, compute};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Sign a netmap of an instance's members (from the inventory and the vars keys).
    Build(BuildArgs),
    /// Print a netmap (without checking its signature).
    Show(ShowArgs),
    /// Check a netmap's network, signature, epoch and expiry.
    #[command(after_help = "Exit status:\n  \
        0  accepted\n  \
        1  refused: read and decoded, but for another network, badly signed, expired or not newer than --last-epoch\n  \
        2  not checked: the netmap or key file is missing, unreadable, too large or malformed, or the arguments are wrong")]
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// The network key file (`wiremesh keygen --network`).
    #[arg(long, value_name = "FILE")]
    network_key: PathBuf,
    /// The epoch; must be higher than that of every netmap the agents hold.
    #[arg(long)]
    epoch: u64,
    /// Issue time, Unix seconds (default: now).
    #[arg(long, value_name = "UNIX")]
    issued_at: Option<u64>,
    /// Seconds from issue to expiry.
    #[arg(long, value_name = "SECONDS", default_value_t = 7 * 24 * 3600)]
    valid_for: u64,
    /// Mark this member revoked (repeatable).
    #[arg(long, value_name = "MACHINE")]
    revoke: Vec<String>,
    /// Where to write the netmap.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The netmap file.
    file: PathBuf,
    /// The pinned network public key (base64).
    #[arg(long, value_name = "BASE64", required_unless_present = "keys")]
    network_public_key: Option<NetworkPublicKey>,
    /// Read the pinned key from `<DIR>/vars/shared/wiremesh-network-<instance>/...`.
    #[arg(
        long,
        value_name = "DIR",
        requires = "instance",
        conflicts_with = "network_public_key"
    )]
    keys: Option<PathBuf>,
    /// The instance, with --keys.
    #[arg(long)]
    instance: Option<String>,
    /// The last epoch accepted; the netmap must be newer.
    #[arg(long)]
    last_epoch: Option<u64>,
    /// The time to check expiry against, Unix seconds (default: now).
    #[arg(long, value_name = "UNIX")]
    now: Option<u64>,
    /// Print the verdict as one JSON object (when the netmap could be checked).
    #[arg(long)]
    json: bool,
}

/// Exit status of `verify` when the netmap could not be checked at all, kept apart from 1 (refused)
/// so scripts can tell a bad netmap from a bad invocation; clap uses 2 for usage errors too.
const NOT_CHECKED: u8 = 2;

pub fn run(cmd: Command) -> ExitCode {
    let (result, prefix, error_code) = match cmd {
        Command::Build(args) => (build(args), "wiremesh netmap", ExitCode::FAILURE),
        Command::Show(args) => (show(args), "wiremesh netmap", ExitCode::FAILURE),
        Command::Verify(args) => (
            verify(args),
            "wiremesh netmap verify",
            ExitCode::from(NOT_CHECKED),
        ),
    };
    match result {
        Ok(code) => code,
        Err(lines) => {
            for line in lines {
                eprintln!("{prefix}: {line}");
            }
            error_code
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn build(args: BuildArgs) -> Result<ExitCode, Vec<String>> {
    let plan = compute(&args.inputs)?;
    if let Some(warning) = permission_warning(&args.network_key) {
        eprintln!("{warning}");
    }
    let key = NetworkKey::load(&args.network_key).map_err(|e| vec![e.to_string()])?;
    if plan.network_public_key != key.public_key() {
        return Err(vec![format!(
            "{} holds network key {}, but {} says {}",
            args.network_key.display(),
            key.public_key(),
            args.inputs
                .keys
                .join(network_key_path(&args.inputs.instance))
                .display(),
            plan.network_public_key
        )]);
    }
    if let Some(unknown) = args.revoke.iter().find(|m| !plan.members.contains_key(*m)) {
        return Err(vec![format!(
            "--revoke {unknown}: not a member of the instance"
        )]);
    }
    let members = plan
        .members
        .values()
        .map(|peer| {
            let mut m = Member::from_peer(peer);
            if plan.machines[&peer.name]
                .roles
                .iter()
                .any(|r| r == CONTROLLER_ROLE)
            {
                m.flags = m.flags.with(Flags::CONTROLLER);
            }
            if args.revoke.contains(&peer.name) {
                m.flags = m.flags.with(Flags::REVOKED);
            }
            m
        })
        .collect();
    let issued_at = args.issued_at.unwrap_or_else(now);
    let content = NetmapContent {
        network: key.public_key(),
        instance: args.inputs.instance.clone(),
        epoch: args.epoch,
        issued_at,
        expires_at: issued_at.saturating_add(args.valid_for),
        members,
    }
    .canonicalize()
    .map_err(|e| vec![e.to_string()])?;
    let bytes = content.sign(key.secret()).encode();
    crate::keys::write_atomic(&args.out, &bytes, 0o644, true)
        .map_err(|e| vec![format!("cannot write {}: {e}", args.out.display())])?;
    eprintln!(
        "wrote {}: epoch {}, {} members, {} bytes",
        args.out.display(),
        args.epoch,
        plan.members.len(),
        bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn load(file: &Path) -> Result<Netmap, Vec<String>> {
    let bytes = read_bounded(file, MAX_NETMAP_BYTES).map_err(|e| vec![e.to_string()])?;
    Netmap::decode(&bytes).map_err(|e| vec![format!("{}: not a netmap: {e}", file.display())])
}

fn show(args: ShowArgs) -> Result<ExitCode, Vec<String>> {
    let map = load(&args.file)?;
    let c = map.content();
    if args.json {
        let text = serde_json::to_string_pretty(c).map_err(|e| vec![e.to_string()])?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("network = {}", c.network);
    println!("instance = {}", c.instance);
    println!("epoch = {}", c.epoch);
    println!("issued-at = {}", c.issued_at);
    println!("expires-at = {}", c.expires_at);
    println!("members = {}", c.members.len());
    println!("signature = not checked (use `wiremesh netmap verify`)");
    println!("name\tipv6\tipv4\tflags\tendpoints\troutes\twireguard-public-key");
    for m in &c.members {
        let routes: Vec<String> = m.routes.iter().map(|r| r.to_string()).collect();
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            m.name,
            m.addresses.ipv6,
            m.addresses.ipv4.map_or("-".to_string(), |a| a.to_string()),
            flag_names(m.flags),
            dash_if_empty(m.endpoints.join(",")),
            dash_if_empty(routes.join(",")),
            m.wireguard_public_key
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn dash_if_empty(text: String) -> String {
    if text.is_empty() { "-".into() } else { text }
}

fn flag_names(flags: Flags) -> String {
    let mut names: Vec<String> = [
        (Flags::REVOKED, "revoked"),
        (Flags::CONTROLLER, "controller"),
        (Flags::OUTSIDE_INVENTORY, "outside-inventory"),
        (Flags::DYNAMIC_IPV4, "dynamic-ipv4"),
    ]
    .iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, n)| n.to_string())
    .collect();
    let known = 0b1111;
    if flags.0 & !known != 0 {
        names.push(format!("0x{:x}", flags.0 & !known));
    }
    dash_if_empty(names.join(","))
}

/// `netmap verify --json`: the verdict and what the netmap says; when it is refused these fields
/// are as decoded, not vouched for by the signature.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Verdict<'a> {
    accepted: bool,
    /// camelCase name of the refusal, stable for scripts: the reason's text may change.
    #[serde(skip_serializing_if = "Option::is_none")]
    rejection: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    network: NetworkPublicKey,
    instance: &'a str,
    epoch: u64,
    issued_at: u64,
    expires_at: u64,
    members: usize,
}

impl<'a> Verdict<'a> {
    fn new(c: &'a NetmapContent, rejection: Option<&Rejection>) -> Self {
        Verdict {
            accepted: rejection.is_none(),
            rejection: rejection.map(|r| match r {
                Rejection::WrongNetwork { .. } => "wrongNetwork",
                Rejection::BadSignature(_) => "badSignature",
                Rejection::StaleEpoch { .. } => "staleEpoch",
                Rejection::Expired { .. } => "expired",
            }),
            reason: rejection.map(ToString::to_string),
            network: c.network,
            instance: &c.instance,
            epoch: c.epoch,
            issued_at: c.issued_at,
            expires_at: c.expires_at,
            members: c.members.len(),
        }
    }
}

fn verify(args: VerifyArgs) -> Result<ExitCode, Vec<String>> {
    let map = load(&args.file)?;
    let pinned = match (args.network_public_key, &args.keys, &args.instance) {
        (Some(key), _, _) => key,
        (None, Some(dir), Some(instance)) => {
            let path = dir.join(network_key_path(instance));
            let text =
                read_text_bounded(&path, MAX_KEY_FILE_BYTES).map_err(|e| vec![e.to_string()])?;
            text.trim()
                .parse()
                .map_err(|e| vec![format!("{}: {e}", path.display())])?
        }
        _ => {
            return Err(vec![
                "give --network-public-key or --keys with --instance".into(),
            ]);
        }
    };
    let now = args.now.unwrap_or_else(now);
    let verdict = map.verify(&pinned, args.last_epoch, now);
    if let Err(rejection) = &verdict {
        eprintln!(
            "wiremesh netmap verify: {}: rejected: {rejection}",
            args.file.display()
        );
    }
    if args.json {
        let summary = Verdict::new(map.content(), verdict.as_ref().err());
        let text = serde_json::to_string_pretty(&summary).map_err(|e| vec![e.to_string()])?;
        println!("{text}");
    } else if let Ok(c) = &verdict {
        println!(
            "accepted: {} epoch {}, {} members, expires at {} ({} s from now)",
            c.instance,
            c.epoch,
            c.members.len(),
            c.expires_at,
            c.expires_at.saturating_sub(now)
        );
    }
    Ok(if verdict.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
