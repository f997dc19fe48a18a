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
