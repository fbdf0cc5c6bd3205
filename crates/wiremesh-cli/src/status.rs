//! `wiremesh status`: asks the local agent(s) over their status sockets and prints the answer,
//! as text like `wg show` or as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use wiremesh_proto::status::{self, SOCKET_DIR, Status};

#[derive(clap::Args)]
pub struct Args {
    /// Print the agent's answer as JSON (one array element per agent).
    #[arg(long)]
    json: bool,
    /// The agent's status socket.
    #[arg(long, conflicts_with = "interface")]
    socket: Option<PathBuf>,
    /// The agent's interface name (socket /run/wiremesh/<NAME>.sock).
    #[arg(long)]
    interface: Option<String>,
}

/// Every `*.sock` in the default directory, sorted, for when no agent was named.
fn all_sockets() -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(SOCKET_DIR).map_err(|e| {
        format!("{SOCKET_DIR}: {e}; is wiremesh-peer running? (--socket PATH names another socket)")
    })?;
    let mut sockets: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    sockets.sort();
    if sockets.is_empty() {
        return Err(format!(
            "no status socket in {SOCKET_DIR}; is wiremesh-peer running?"
        ));
    }
    Ok(sockets)
}

pub fn run(args: Args) -> ExitCode {
    let sockets = match (&args.socket, &args.interface) {
        (Some(path), _) => vec![path.clone()],
        (None, Some(name)) => vec![status::default_socket_path(name)],
        (None, None) => match all_sockets() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("wiremesh status: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut answers: Vec<Status> = Vec::new();
    let mut failed = false;
    for socket in &sockets {
        match status::query(socket) {
            Ok(s) => answers.push(s),
            Err(e) => {
                eprintln!("wiremesh status: {e}");
                failed = true;
            }
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&answers) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("wiremesh status: cannot encode JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let texts: Vec<String> = answers.iter().map(Status::render).collect();
        print!("{}", texts.join("\n"));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
