//! The SQLite store: one file under the state directory, in WAL mode with full fsync, so a commit
//! that returned survives a crash or a power cut.
//!
//! Opening checks the file before anything is decided: a file that is not a database, fails
//! SQLite's `quick_check`, is empty although it exists, has another schema version or holds a row
//! that does not parse is refused with its path.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, Transaction, params};

use super::{Store, StoreError};
use crate::state::{Change, EpochRecord, Node, NodeKind, Revocation, State, Token, TokenHash};

/// The schema version `schema.sql` creates.
pub const SCHEMA_VERSION: i64 = 1;
/// The store's file name in the state directory.
pub const STORE_FILE: &str = "controller.sqlite";
const SCHEMA: &str = include_str!("schema.sql");

/// The controller's SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Connection,
}

impl SqliteStore {
    /// Opens the store at `path`, creating it (mode 0600) if there is no file yet.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        let fresh = match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => return Err(corrupt("not a regular file".into())),
            Ok(m) if m.len() == 0 => {
                return Err(corrupt(
                    "the file is empty, but a store is never empty once created (truncated?)"
                        .into(),
                ));
            }
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(failed(path, e.to_string())),
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| failed(path, e.to_string()))?;
        let mut store = Self {
            path: path.to_path_buf(),
            conn,
        };
        store.configure(fresh)?;
        if fresh {
            store.create()?;
        } else {
            store.check()?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&mut self, fresh: bool) -> Result<(), StoreError> {
        let path = self.path.clone();
        // The first read of a damaged file fails here ("file is not a database").
        let sql = |e: rusqlite::Error| classify(&path, e);
        self.conn
            .busy_timeout(Duration::from_secs(1))
            .map_err(sql)?;
        // One controller per store: the first keeps the file locked until it closes it, so a
        // second one on the same state directory cannot lease the same addresses.
        let locking: String = self
            .conn
            .query_row("PRAGMA locking_mode=EXCLUSIVE", [], |r| r.get(0))
            .map_err(sql)?;
        if !locking.eq_ignore_ascii_case("exclusive") {
            return Err(failed(
                &self.path,
                format!("cannot lock the store (locking mode is {locking})"),
            ));
        }
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(failed(
                &self.path,
                format!("cannot switch to WAL mode (journal mode is {mode})"),
            ));
        }
        // WAL with NORMAL may lose the last commits on power loss; a lease must not be.
        self.conn
            .execute_batch("PRAGMA synchronous=FULL")
            .map_err(sql)?;
        if fresh {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| failed(&self.path, format!("cannot make it private: {e}")))?;
        }
        Ok(())
    }

    fn create(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| classify(&path, e))?;
        tx.execute_batch(SCHEMA)
            .map_err(|e| failed(&path, format!("cannot create the schema: {e}")))?;
        tx.commit().map_err(|e| classify(&path, e))
    }

    fn check(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let corrupt = |detail: String| StoreError::Corrupt {
            path: path.clone(),
            detail,
        };
        let problems: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("PRAGMA quick_check")
                .map_err(|e| classify(&path, e))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| classify(&path, e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| classify(&path, e))?
        };
        if problems != ["ok"] {
            let shown: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
            return Err(corrupt(format!(
                "SQLite's integrity check failed: {}",
                shown.join("; ")
            )));
        }
        let has_schema: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'wiremesh_schema'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| classify(&path, e))?;
        if has_schema == 0 {
            return Err(corrupt(
                "a SQLite database, but not a wiremesh controller store (no wiremesh_schema table)"
                    .into(),
            ));
        }
        let version: Option<i64> = self
            .conn
            .query_row("SELECT max(version) FROM wiremesh_schema", [], |r| r.get(0))
            .map_err(|e| classify(&path, e))?;
        match version {
            Some(SCHEMA_VERSION) => Ok(()),
            Some(found) => Err(StoreError::UnsupportedVersion {
                path: path.clone(),
                found,
            }),
            None => Err(corrupt("the wiremesh_schema table is empty".into())),
        }
    }

    fn read(&self) -> Result<State, String> {
        let mut state = State::default();
        let conn = &self.conn;
        state.epoch = conn
            .query_row(
                "SELECT epoch, issued_at, expires_at, netmap FROM epoch WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| format!("table epoch: {e}"))?
            .map(|(epoch, issued_at, expires_at, netmap)| {
                Ok::<_, String>(EpochRecord {
                    epoch: unsigned("epoch", epoch)?,
                    issued_at: unsigned("epoch.issued_at", issued_at)?,
                    expires_at: unsigned("epoch.expires_at", expires_at)?,
                    netmap: BASE64
                        .decode(&netmap)
                        .map_err(|e| format!("table epoch: netmap is not base64: {e}"))?,
                })
            })
            .transpose()?;

        for (member, ipv4) in rows(conn, "SELECT member, ipv4 FROM leases", |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })? {
            let ipv4: Ipv4Addr = ipv4.parse().map_err(|_| {
                format!("table leases, member {member:?}: {ipv4:?} is not an IPv4 address")
            })?;
            if let Some(holder) = state.lease_holder(ipv4) {
                return Err(format!(
                    "table leases: {ipv4} is leased to both {holder:?} and {member:?}"
                ));
            }
            state.leases.insert(member, ipv4);
        }

        let sql = "SELECT name, kind, node_public_key, wireguard_public_key, created_at FROM nodes";
        for (name, kind, node, wg, created_at) in rows(conn, sql, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })? {
            let at = format!("table nodes, name {name:?}");
            let node = Node {
                kind: NodeKind::parse(&kind).ok_or_else(|| format!("{at}: kind {kind:?}"))?,
                node_public_key: key(&at, &node)?,
                wireguard_public_key: key(&at, &wg)?,
                created_at: unsigned(&at, created_at)?,
            };
            state.nodes.insert(name, node);
        }

        let sql = "SELECT token_hash, name, created_at, expires_at, used_at FROM join_tokens";
        for (hash, name, created_at, expires_at, used_at) in rows(conn, sql, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })? {
            let at = format!("table join_tokens, name {name:?}");
            let token = Token {
                created_at: unsigned(&at, created_at)?,
                expires_at: unsigned(&at, expires_at)?,
                used_at: used_at.map(|t| unsigned(&at, t)).transpose()?,
                name,
            };
            state.tokens.insert(token_hash(&at, &hash)?, token);
        }

        let sql = "SELECT node_public_key, wireguard_public_key, name, revoked_at FROM revocations";
        for (node, wg, name, revoked_at) in rows(conn, sql, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })? {
            let at = format!("table revocations, name {name:?}");
            let revocation = Revocation {
                node_public_key: key(&at, &node)?,
                wireguard_public_key: key(&at, &wg)?,
                revoked_at: unsigned(&at, revoked_at)?,
                name,
            };
            state
                .revocations
                .insert(revocation.node_public_key, revocation);
        }
        Ok(state)
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<State, StoreError> {
        self.read().map_err(|detail| StoreError::Corrupt {
            path: self.path.clone(),
            detail,
        })
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| classify(&path, e))?;
        for change in changes {
            write(&tx, change).map_err(|detail| failed(&path, detail))?;
        }
        tx.commit().map_err(|e| classify(&path, e))
    }
}

/// One change as SQL; a change that touches no row is refused, as [`State::apply`] refuses it.
fn write(tx: &Transaction<'_>, change: &Change) -> Result<(), String> {
    let n = match change {
        Change::Epoch(r) => tx.execute(
            "INSERT INTO epoch (id, epoch, issued_at, expires_at, netmap) VALUES (1, ?1, ?2, ?3, ?4) \
             ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, issued_at = excluded.issued_at, \
             expires_at = excluded.expires_at, netmap = excluded.netmap",
            params![
                signed(r.epoch)?,
                signed(r.issued_at)?,
                signed(r.expires_at)?,
                BASE64.encode(&r.netmap)
            ],
        ),
        Change::Lease { member, ipv4 } => tx.execute(
            "INSERT INTO leases (member, ipv4) VALUES (?1, ?2)",
            params![member, ipv4.to_string()],
        ),
        Change::Release { member } => {
            tx.execute("DELETE FROM leases WHERE member = ?1", params![member])
        }
        Change::AddNode { name, node } => tx.execute(
            "INSERT INTO nodes (name, kind, node_public_key, wireguard_public_key, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                name,
                node.kind.as_str(),
                node.node_public_key.to_base64(),
                node.wireguard_public_key.to_base64(),
                signed(node.created_at)?
            ],
        ),
        Change::RemoveNode { name } => tx.execute("DELETE FROM nodes WHERE name = ?1", params![name]),
        Change::AddToken { hash, token } => tx.execute(
            "INSERT INTO join_tokens (token_hash, name, created_at, expires_at, used_at) \
             VALUES (?1, ?2, ?3, ?4, NULL)",
            params![
                hex(hash),
                token.name,
                signed(token.created_at)?,
                signed(token.expires_at)?
            ],
        ),
        Change::UseToken { hash, at } => tx.execute(
            "UPDATE join_tokens SET used_at = ?1 WHERE token_hash = ?2 AND used_at IS NULL",
            params![signed(*at)?, hex(hash)],
        ),
        Change::DropToken { hash } => tx.execute(
            "DELETE FROM join_tokens WHERE token_hash = ?1",
            params![hex(hash)],
        ),
        Change::Revoke(r) => tx.execute(
            "INSERT INTO revocations (node_public_key, wireguard_public_key, name, revoked_at) \
             VALUES (?1, ?2, ?3, ?4)",
            params![
                r.node_public_key.to_base64(),
                r.wireguard_public_key.to_base64(),
                r.name,
                signed(r.revoked_at)?
            ],
        ),
    }
    .map_err(|e| format!("{change:?}: {e}"))?;
    if n == 1 {
        Ok(())
    } else {
        Err(format!("{change:?} changed {n} rows instead of one"))
    }
}

fn failed(path: &Path, detail: String) -> StoreError {
    StoreError::Failed {
        path: path.to_path_buf(),
        detail,
    }
}

/// SQLite's "not a database" and "malformed" errors are corruption; the rest are failures.
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => failed(
            path,
            format!(
                "{e}: another process holds the store (a second controller on this state directory?)"
            ),
        ),
        _ => failed(path, e.to_string()),
    }
}

fn rows<T>(
    conn: &Connection,
    sql: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, String> {
    let table = sql.rsplit(' ').next().unwrap_or(sql);
    let mut stmt = conn
        .prepare(sql)
        .map_err(|e| format!("table {table}: {e}"))?;
    stmt.query_map([], map)
        .and_then(|rows| rows.collect())
        .map_err(|e| format!("table {table}: {e}"))
}

fn unsigned(at: &str, value: i64) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("{at}: {value} is negative"))
}

/// Times and epochs are stored as BIGINT, which holds values up to 2^63 - 1.
fn signed(value: u64) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("{value} does not fit a BIGINT column"))
}

fn key<K: std::str::FromStr<Err = wiremesh_core::keys::KeyParseError>>(
    at: &str,
    text: &str,
) -> Result<K, String> {
    text.parse().map_err(|e| format!("{at}: key {text:?}: {e}"))
}

fn hex(hash: &TokenHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_hash(at: &str, text: &str) -> Result<TokenHash, String> {
    let bad = || format!("{at}: token hash {text:?} is not 64 hex digits");
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad());
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremesh_core::keys::{NodePublicKey, WireguardPublicKey};

    fn sample_changes() -> Vec<Change> {
        vec![
            Change::Epoch(EpochRecord {
                epoch: 3,
                issued_at: 100,
                expires_at: 200,
                netmap: vec![1, 2, 3],
            }),
            Change::Lease {
                member: "laptop".into(),
                ipv4: Ipv4Addr::new(100, 77, 0, 1),
            },
            Change::AddNode {
                name: "phone".into(),
                node: Node {
                    kind: NodeKind::Device,
                    node_public_key: NodePublicKey::from_bytes([1; 32]),
                    wireguard_public_key: WireguardPublicKey::from_bytes([2; 32]),
                    created_at: 50,
                },
            },
            Change::AddToken {
                hash: [0xab; 32],
                token: Token {
                    name: "tv".into(),
                    created_at: 1,
                    expires_at: 3601,
                    used_at: None,
                },
            },
            Change::UseToken {
                hash: [0xab; 32],
                at: 7,
            },
            Change::Revoke(Revocation {
                name: "old".into(),
                node_public_key: NodePublicKey::from_bytes([3; 32]),
                wireguard_public_key: WireguardPublicKey::from_bytes([4; 32]),
                revoked_at: 9,
            }),
        ]
    }

    #[test]
    fn every_change_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        let mut expected = State::default();
        expected.apply_all(&sample_changes()).unwrap();
        {
            let mut store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.load().unwrap(), State::default());
            store.commit(&sample_changes()).unwrap();
            assert_eq!(store.load().unwrap(), expected);
        }
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load().unwrap(), expected);
        let release = [
            Change::Release {
                member: "laptop".into(),
            },
            Change::RemoveNode {
                name: "phone".into(),
            },
        ];
        store.commit(&release).unwrap();
        expected.apply_all(&release).unwrap();
        drop(store);
        assert_eq!(SqliteStore::open(&path).unwrap().load().unwrap(), expected);
    }

    #[test]
    fn a_second_controller_cannot_open_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        let first = SqliteStore::open(&path).unwrap();
        let e = SqliteStore::open(&path).unwrap_err();
        assert!(
            e.to_string().contains("another process holds the store"),
            "{e}"
        );
        drop(first);
        SqliteStore::open(&path).unwrap();
    }

    #[test]
    fn a_failed_batch_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join(STORE_FILE)).unwrap();
        let lease = |member: &str| Change::Lease {
            member: member.into(),
            ipv4: Ipv4Addr::new(100, 77, 0, 1),
        };
        store.commit(&[lease("a")]).unwrap();
        let e = store
            .commit(&[
                Change::Release { member: "a".into() },
                lease("b"),
                lease("c"),
            ])
            .unwrap_err();
        assert!(e.to_string().contains("UNIQUE constraint failed"), "{e}");
        assert_eq!(
            store.load().unwrap().leases,
            [("a".to_string(), Ipv4Addr::new(100, 77, 0, 1))].into()
        );
        let e = store
            .commit(&[Change::Release { member: "x".into() }])
            .unwrap_err();
        assert!(e.to_string().contains("changed 0 rows"), "{e}");
    }

    fn refused(path: &Path) -> String {
        let e = SqliteStore::open(path).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("store {}: ", path.display())),
            "{text}"
        );
        text
    }

    #[test]
    fn damaged_files_are_refused_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        {
            let mut store = SqliteStore::open(&path).unwrap();
            for i in 0..200u8 {
                store
                    .commit(&[Change::Lease {
                        member: format!("member-{i:03}-{}", "x".repeat(200)),
                        ipv4: Ipv4Addr::new(100, 77, 1, i),
                    }])
                    .unwrap();
            }
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 8192, "{} bytes", bytes.len());

        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let text = refused(&path);
        assert!(
            matches!(SqliteStore::open(&path), Err(StoreError::Corrupt { .. })),
            "{text}"
        );

        std::fs::write(&path, b"").unwrap();
        assert!(refused(&path).contains("the file is empty"));

        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Corrupt { .. })
        ));

        // A valid SQLite database of some other program.
        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .unwrap();
        assert!(refused(&other).contains("not a wiremesh controller store"));
    }

    #[test]
    fn other_schema_versions_and_bad_rows_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("INSERT INTO leases (member, ipv4) VALUES ('m', '300.1.2.3')")
            .unwrap();
        drop(conn);
        let mut store = SqliteStore::open(&path).unwrap();
        let e = store.load().unwrap_err();
        assert!(
            e.to_string()
                .contains("table leases, member \"m\": \"300.1.2.3\" is not an IPv4 address"),
            "{e}"
        );
        drop(store);
        Connection::open(&path)
            .unwrap()
            .execute_batch("UPDATE wiremesh_schema SET version = 2")
            .unwrap();
        assert_eq!(
            SqliteStore::open(&path).unwrap_err(),
            StoreError::UnsupportedVersion {
                path: path.clone(),
                found: 2
            }
        );
    }

    #[test]
    fn the_schema_uses_only_portable_sql() {
        let sql: String = SCHEMA
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
            .to_uppercase();
        for word in ["AUTOINCREMENT", "STRICT", "BLOB", "WITHOUT ROWID", "PRAGMA"] {
            assert!(!sql.contains(word), "{word}");
        }
        assert!(sql.contains("CREATE TABLE LEASES"));
    }
}
