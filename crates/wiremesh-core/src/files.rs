//! Reading a whole file with a size limit.
//!
//! The files wiremesh reads (configs, netmaps, inventories, key files) are named by users, and a
//! path such as `/dev/zero`, a FIFO or a mistaken multi-gigabyte file would otherwise be read until
//! memory runs out. [`read_bounded`] reads at most `limit + 1` bytes and refuses the file when it
//! gets them, so memory use is bounded by the limit whatever the path names.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// A file that could not be read, or was larger than allowed; names the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {problem}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    pub problem: ReadProblem,
}

/// What went wrong, without the file name (for messages that name the file themselves).
#[derive(Debug, thiserror::Error)]
pub enum ReadProblem {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
}

/// The bytes of the file at `path` if it holds at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, ReadError> {
    let fail = |problem| ReadError {
        path: path.to_path_buf(),
        problem,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(ReadProblem::Io(e)))?;
    if bytes.len() > limit {
        return Err(fail(ReadProblem::TooLarge { limit }));
    }
    Ok(bytes)
}

/// [`read_bounded`] of UTF-8 text.
pub fn read_text_bounded(path: &Path, limit: usize) -> Result<String, ReadError> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|e| ReadError {
        path: path.to_path_buf(),
        problem: ReadProblem::NotUtf8 {
            offset: e.utf8_error().valid_up_to(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in the system temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> Self {
            let path = std::env::temp_dir()
                .join(format!("wiremesh-core-files-{}-{name}", std::process::id()));
            std::fs::write(&path, bytes).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn files_over_the_limit_are_refused() {
        let file = TempFile::new("eleven", &[0u8; 11]);
        let err = read_bounded(&file.0, 10).unwrap_err();
        assert!(matches!(err.problem, ReadProblem::TooLarge { limit: 10 }));
        assert_eq!(
            err.to_string(),
            format!("cannot read {}: larger than 10 bytes", file.0.display())
        );
        assert_eq!(read_bounded(&file.0, 11).unwrap(), [0u8; 11]);
    }

    #[test]
    fn endless_files_stop_at_the_limit() {
        let err = read_bounded(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read /dev/zero: larger than 1024 bytes"
        );
    }

    #[test]
    fn missing_files_name_the_path() {
        let path = std::env::temp_dir().join("wiremesh-core-files-absent");
        let err = read_bounded(&path, 10).unwrap_err();
        assert!(
            matches!(&err.problem, ReadProblem::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
        );
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read {}: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn text_must_be_utf8() {
        let file = TempFile::new("latin1", b"caf\xe9");
        let err = read_text_bounded(&file.0, 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read {}: not UTF-8 text (invalid byte at offset 3)",
                file.0.display()
            )
        );
        let file = TempFile::new("utf8", "café".as_bytes());
        assert_eq!(read_text_bounded(&file.0, 10).unwrap(), "café");
    }
}
