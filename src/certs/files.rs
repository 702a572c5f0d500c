//! Writing a `gen-certs` set: the output directory (created 0700 when missing), the refusal to
//! overwrite anything, exclusive creation with fixed modes, and the removal of this run's files
//! when a write fails. Also [`Generated`]: the paths written and the config snippets printed.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{io_err, CertsError, CA_VALIDITY_DAYS, LEAF_VALIDITY_DAYS};

/// The files written into the target directory, in writing order (as `conf/make-certs.sh`).
pub const FILE_NAMES: [&str; 6] = [
    CA_CERT,
    CA_KEY,
    SERVER_CERT,
    SERVER_KEY,
    CLIENT_CERT,
    CLIENT_KEY,
];
pub(super) const CA_CERT: &str = "ca.pem";
pub(super) const CA_KEY: &str = "ca.key";
pub(super) const SERVER_CERT: &str = "server.pem";
pub(super) const SERVER_KEY: &str = "server.key";
pub(super) const CLIENT_CERT: &str = "client.pem";
pub(super) const CLIENT_KEY: &str = "client.key";

pub(super) const CERT_MODE: u32 = 0o644;
pub(super) const KEY_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// The absolute paths of the files written by [`generate`](super::generate).
#[derive(Debug, Clone)]
pub struct Generated {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub server_name: String,
    pub client_name: String,
}

impl Generated {
    /// The client side's `peer.server_name` and `tls`, as a JSON object to merge into its config.
    pub fn client_snippet(&self) -> serde_json::Value {
        serde_json::json!({
            "peer": { "server_name": self.server_name },
            "tls": {
                "ca": path_str(&self.ca_cert),
                "cert": path_str(&self.client_cert),
                "key": path_str(&self.client_key),
            },
        })
    }

    /// The server side's `tls` (with `allowed_client_names`), as a JSON object to merge.
    pub fn server_snippet(&self) -> serde_json::Value {
        serde_json::json!({
            "tls": {
                "ca": path_str(&self.ca_cert),
                "cert": path_str(&self.server_cert),
                "key": path_str(&self.server_key),
                "allowed_client_names": [self.client_name],
            },
        })
    }

    /// The report printed by `ptproxy gen-certs`: what was written and both config snippets.
    pub fn report(&self) -> String {
        let pretty = |v: &serde_json::Value| {
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        };
        format!(
            "gen-certs: wrote {dir}/{{{files}}}\n\
             CA valid {ca} days, server {server:?} and client {client:?} certificates {leaf} days.\n\
             Keep {ca_key} offline: it can mint certificates both sides trust.\n\
             \n\
             Client config (merge into the client's JSON file, next to peer.address):\n\
             {client_json}\n\
             \n\
             Server config (merge into the server's JSON file):\n\
             {server_json}\n",
            dir = self.dir.display(),
            files = FILE_NAMES.join(","),
            ca = CA_VALIDITY_DAYS,
            leaf = LEAF_VALIDITY_DAYS,
            server = self.server_name,
            client = self.client_name,
            ca_key = self.ca_key.display(),
            client_json = pretty(&self.client_snippet()),
            server_json = pretty(&self.server_snippet()),
        )
    }
}

/// Paths are checked to be UTF-8 before anything is written, so this is lossless.
fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Creates `dir` (0700, parents too) when missing and returns its canonical path, which must be
/// a directory with a UTF-8 path (it goes into JSON configs).
pub(super) fn prepare_dir(dir: &Path) -> Result<PathBuf, CertsError> {
    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        // Missing parents are created too, with the same mode.
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(io_err(dir, "create directory"))?,
        Err(e) => return Err(io_err(dir, "check")(e)),
    }
    let dir = fs::canonicalize(dir).map_err(io_err(dir, "resolve directory"))?;
    if !dir.is_dir() {
        return Err(CertsError::Io {
            path: dir,
            op: "use as output directory",
            err: io::Error::other("not a directory"),
        });
    }
    if dir.to_str().is_none() {
        return Err(CertsError::NotUtf8(dir));
    }
    Ok(dir)
}

/// Checks every target before writing any (symlink_metadata: a dangling link counts too).
pub(super) fn check_targets_absent(dir: &Path) -> Result<(), CertsError> {
    for name in FILE_NAMES {
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(_) => return Err(CertsError::Exists(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, "check")(e)),
        }
    }
    Ok(())
}

/// Writes `(name, contents, mode)` files into `dir` in order; when one fails, removes the files
/// this call created and returns the error.
pub(super) fn write_files(dir: &Path, files: &[(&str, &[u8], u32)]) -> Result<(), CertsError> {
    let mut created: Vec<PathBuf> = Vec::with_capacity(files.len());
    for &(name, contents, mode) in files {
        let path = dir.join(name);
        if let Err(e) = write_new(&path, contents, mode, &mut created) {
            for path in &created {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Creates `path` exclusively with `mode` (explicitly set, whatever the umask), writes and syncs.
/// Pushes the path onto `created` as soon as the file exists, so a failure can remove it.
fn write_new(
    path: &Path,
    contents: &[u8],
    mode: u32,
    created: &mut Vec<PathBuf>,
) -> Result<(), CertsError> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|err| {
            if err.kind() == io::ErrorKind::AlreadyExists {
                CertsError::Exists(path.to_path_buf())
            } else {
                io_err(path, "create")(err)
            }
        })?;
    created.push(path.to_path_buf());
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(path, "set permissions of"))?;
    file.write_all(contents).map_err(io_err(path, "write"))?;
    file.sync_all().map_err(io_err(path, "sync"))?;
    Ok(())
}
