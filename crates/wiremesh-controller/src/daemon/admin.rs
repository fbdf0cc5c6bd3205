//! The admin socket: a unix stream socket in the state directory, mode 0600, one JSON request
//! line and one JSON answer line per connection, the request bounded in size and time.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use wiremesh_proto::admin::{ADMIN_VERSION, MAX_REQUEST_LINE, Outcome, Request, Response};

use super::core::{Command, CoreHandle};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the socket at `path`, replacing only a stale socket (never another kind of file).
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let at = |e: std::io::Error| format!("admin socket {}: {e}", path.display());
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(at)?,
        Ok(_) => {
            return Err(format!(
                "admin socket {}: the path exists and is not a socket; refusing to replace it",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(at(e)),
    }
    let listener = UnixListener::bind(path).map_err(at)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(at)?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, core: CoreHandle) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let core = core.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &core).await {
                tracing::debug!("admin connection: {e}");
            }
        });
    }
}

async fn answer(stream: UnixStream, core: &CoreHandle) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut limited = BufReader::new(read.take(MAX_REQUEST_LINE as u64 + 1));
    let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, limited.read_line(&mut line)).await {
        Err(_) => Outcome::Error {
            message: format!("no request within {} s", REQUEST_TIMEOUT.as_secs()),
        },
        Ok(Err(e)) => Outcome::Error {
            message: format!("cannot read the request: {e}"),
        },
        Ok(Ok(_)) if line.len() > MAX_REQUEST_LINE => Outcome::Error {
            message: format!("the request is longer than {MAX_REQUEST_LINE} bytes"),
        },
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => core
                .ask(|reply| Command::Admin { request, reply })
                .await
                .map_or(
                    Outcome::Error {
                        message: "the controller is stopping".into(),
                    },
                    |r| r.outcome,
                ),
            Err(e) => Outcome::Error {
                message: format!("not a request: {e}"),
            },
        },
    };
    let response = Response {
        version: ADMIN_VERSION,
        outcome,
    };
    let mut text = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    text.push(b'\n');
    write.write_all(&text).await?;
    write.shutdown().await
}
