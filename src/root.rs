//! Where every program finds its files: `config/`, `chunks/<name>/` and `files/` under one
//! root directory (the current directory unless `--root DIR` says otherwise).

use std::path::{Path, PathBuf};

/// The root directory of a swarmlet installation (or of a test's temporary copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    /// A root at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root(dir.into())
    }
    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// `config/`.
    pub fn config_dir(&self) -> PathBuf {
        self.0.join("config")
    }
    /// `config/peers.ini`: who listens where.
    pub fn peers_ini(&self) -> PathBuf {
        self.config_dir().join("peers.ini")
    }
    /// `config/file.ini`: the shared file's chunks and who has them.
    pub fn file_ini(&self) -> PathBuf {
        self.config_dir().join("file.ini")
    }
    /// `chunks/`, the parent of every peer's chunk directory.
    pub fn chunks_root(&self) -> PathBuf {
        self.0.join("chunks")
    }
    /// `chunks/<name>/`: the chunk directory of peer `name`.
    pub fn chunks_dir(&self, name: &str) -> PathBuf {
        self.chunks_root().join(name)
    }
    /// `files/`: the original files.
    pub fn files_dir(&self) -> PathBuf {
        self.0.join("files")
    }
}

impl Default for Root {
    fn default() -> Self {
        Root::new(".")
    }
}

/// A path as users should read it in messages: without a leading `./`.
pub fn display_path(p: &Path) -> String {
    let s = p.display().to_string();
    match s.strip_prefix("./") {
        Some(rest) => rest.to_string(),
        None => s,
    }
}

/// Why a file name cannot be used: the name of the shared file travels in file.ini and on
/// the wire (FILE_INFO), and becomes a path under `files/` and `chunks/charlie/`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    /// Empty.
    #[error("the file name is empty")]
    Empty,
    /// `.`, `..`, or containing `..`: could climb out of the directory.
    #[error("{0:?} contains '..' or is '.'")]
    Dots(String),
    /// Contains `/` or `\`: the name must stay inside its directory.
    #[error("{0:?} contains a path separator")]
    Separator(String),
    /// Contains a control character or NUL (a newline would break file.ini), or begins or
    /// ends with whitespace (file.ini readers trim values, so it would not read back the
    /// same).
    #[error("{0:?} contains a control character or leading/trailing whitespace")]
    Unprintable(String),
}

/// Checks that `name` is a plain file name, safe to join to a directory and to write to
/// file.ini. Charlie calls it on the name received from the network before using it.
pub fn check_file_name(name: &str) -> Result<(), FileNameError> {
    if name.is_empty() {
        Err(FileNameError::Empty)
    } else if name == "." || name.contains("..") {
        Err(FileNameError::Dots(name.into()))
    } else if name.contains(['/', '\\']) {
        Err(FileNameError::Separator(name.into()))
    } else if name.chars().any(char::is_control) || name.trim() != name {
        Err(FileNameError::Unprintable(name.into()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        for bad in [
            "", "a/b", "..", "../x", "a\\b", "x\0", ".", "a..b", "a\nb", " x", "x ",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        for good in ["test.bin", "a b.txt", ".hidden", "été.mp4"] {
            assert!(check_file_name(good).is_ok(), "{good:?}");
        }
    }
}
