//! `wiremesh`: the admin CLI. Each subcommand lives in its own module and is a thin shell over the
//! library crates: it reads files, calls a pure function and prints the result.

mod address;
mod demo;
mod inventory;
mod keys;
mod netmap;
mod plan;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wiremesh", version, about = "A mesh VPN for Clan: admin CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with a Clan inventory (inventory.json).
    #[command(subcommand)]
    Inventory(inventory::Command),
    /// Generate a machine identity or a network key.
    Keygen(keys::KeygenArgs),
    /// Print the public parts of an identity or network key file.
    Pubkey(keys::PubkeyArgs),
    /// Print a member's derived overlay addresses.
    Address(address::Args),
    /// Compute the per-machine agent configurations of an instance.
    Plan(plan::Args),
    /// Build, show and verify signed network maps.
    #[command(subcommand)]
    Netmap(netmap::Command),
    /// Ask the local agent for the state of the mesh.
    Status(status::Args),
    /// Bring up a small mesh in network namespaces (needs root).
    Demo(demo::Args),
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`wiremesh ... | head`), like other Unix tools, instead of
    // panicking inside println!.
    // SAFETY: called first thing in main, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Inventory(cmd) => inventory::run(cmd),
        Command::Keygen(args) => keys::keygen(args),
        Command::Pubkey(args) => keys::pubkey(args),
        Command::Address(args) => address::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Netmap(cmd) => netmap::run(cmd),
        Command::Status(args) => status::run(args),
        Command::Demo(args) => demo::run(args),
    }
}
