//! `wiremesh status`: asks the local agent(s) over their status sockets and prints the answer,
//! as text like `wg show` or as JSON.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
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

/// Whether nothing listens on `socket` any more: what an agent that was killed leaves behind.
fn is_stale(socket: &Path) -> bool {
    matches!(
        UnixStream::connect(socket),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Every `*.sock` in the default directory, sorted, for when no agent was named; sockets that a
/// killed agent left behind are skipped with a note.
fn all_sockets(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let shown = dir.display();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!("{shown}: {e}; is wiremesh-peer running? (--socket PATH names another socket)")
    })?;
    let mut sockets: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    sockets.sort();
    let (stale, live): (Vec<PathBuf>, Vec<PathBuf>) =
        sockets.into_iter().partition(|p| is_stale(p));
    for socket in &stale {
        eprintln!(
            "wiremesh status: {}: no agent listens (left by one that stopped); skipped",
            socket.display()
        );
    }
    if live.is_empty() {
        return Err(format!(
            "no running agent's status socket in {shown}; is wiremesh-peer running?"
        ));
    }
    Ok(live)
}

pub fn run(args: Args) -> ExitCode {
    let sockets = match (&args.socket, &args.interface) {
        (Some(path), _) => vec![path.clone()],
        (None, Some(name)) => vec![status::default_socket_path(name)],
        (None, None) => match all_sockets(Path::new(SOCKET_DIR)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn sockets_left_by_stopped_agents_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("wm-a.sock");
        let _listening = UnixListener::bind(&live).unwrap();
        drop(UnixListener::bind(dir.path().join("wm-b.sock")).unwrap());
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        assert_eq!(all_sockets(dir.path()), Ok(vec![live]));
        drop(_listening);
        let e = all_sockets(dir.path()).unwrap_err();
        assert!(e.contains("no running agent's status socket"), "{e}");
    }
}
