//! `wiremesh address`: a member's derived overlay addresses and the instance's interface name.
//! The Nix vars generators store this output, so its text is byte-stable (pinned by golden tests).

use std::process::ExitCode;

use ipnet::IpNet;
use wiremesh_core::addresses::{
    derive_ipv4_network, derive_ipv6_network, interface_name, member_ipv6, parse_ipv4_network,
    parse_ipv6_network,
};

#[derive(clap::Args)]
pub struct Args {
    /// The instance name (as in the inventory).
    #[arg(long)]
    instance: String,
    /// The machine name.
    #[arg(long)]
    machine: String,
    /// The instance's network when set in settings (`ipv6Network`, `ipv4Network`); give it once
    /// per address family. Without it the networks are derived from the instance name.
    #[arg(long, value_name = "CIDR")]
    network: Vec<String>,
    /// Print only this field's value.
    #[arg(long, value_enum, conflicts_with = "json")]
    field: Option<Field>,
    /// Print a JSON object (sorted keys) instead of `name = value` lines.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Field {
    Ipv6Network,
    Ipv6,
    Ipv4Network,
    Interface,
}

pub fn run(args: Args) -> ExitCode {
    let mut ipv6_network = derive_ipv6_network(&args.instance);
    let mut ipv4_network = derive_ipv4_network(&args.instance);
    let (mut seen_v6, mut seen_v4) = (false, false);
    for text in &args.network {
        let parsed = match text.parse::<IpNet>() {
            Ok(IpNet::V6(_)) if !seen_v6 => {
                seen_v6 = true;
                parse_ipv6_network(text).map(|n| ipv6_network = n)
            }
            Ok(IpNet::V4(_)) if !seen_v4 => {
                seen_v4 = true;
                parse_ipv4_network(text).map(|n| ipv4_network = n)
            }
            Ok(_) => {
                eprintln!(
                    "wiremesh address: --network {text}: only one network per address family"
                );
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!(
                    "wiremesh address: --network {text:?} is not a CIDR like fd12:3456:789a::/48 or 100.77.0.0/16"
                );
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = parsed {
            eprintln!("wiremesh address: --network: {e}");
            return ExitCode::FAILURE;
        }
    }
    let values = [
        ("ipv6-network", "ipv6Network", ipv6_network.to_string()),
        (
            "ipv6",
            "ipv6",
            member_ipv6(ipv6_network, &args.machine).to_string(),
        ),
        ("ipv4-network", "ipv4Network", ipv4_network.to_string()),
        ("interface", "interface", interface_name(&args.instance)),
    ];
    if let Some(field) = args.field {
        let index = match field {
            Field::Ipv6Network => 0,
            Field::Ipv6 => 1,
            Field::Ipv4Network => 2,
            Field::Interface => 3,
        };
        println!("{}", values[index].2);
    } else if args.json {
        // A BTreeMap keeps keys sorted whatever serde_json's features are.
        let object: std::collections::BTreeMap<&str, &str> = values
            .iter()
            .map(|(_, key, value)| (*key, value.as_str()))
            .collect();
        match serde_json::to_string(&object) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("wiremesh address: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        for (name, _, value) in &values {
            println!("{name} = {value}");
        }
    }
    ExitCode::SUCCESS
}
