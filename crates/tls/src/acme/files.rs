//! What the ACME client keeps in `STATE_DIR/acme/`: the account
//! (`account.json`) and the certificate chain with its key
//! (`certificate.json`), each recorded with the directory URL of the ACME
//! server it belongs to, so that switching servers (staging → production)
//! never reuses the other server's account or certificate. The directory is
//! 0700, the files 0600, and every write is atomic (a temporary file, fsync,
//! rename, fsync of the directory): a crash leaves the old file or the new
//! one, and a chain never sits next to another chain's key.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use instant_acme::AccountCredentials;
use serde::{Deserialize, Serialize};

/// A state file that cannot be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading or writing failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// "read", "write", …
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not what baton wrote.
    #[error("could not parse {} (remove it to start afresh): {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// A certificate as stored: the PEM chain (leaf first) and its PEM key.
pub struct StoredCertificate {
    /// The chain, leaf first.
    pub chain: String,
    /// The private key (PKCS#8).
    pub key: String,
}

#[derive(Deserialize)]
struct AccountFile {
    directory: String,
    credentials: AccountCredentials,
}

#[derive(Serialize)]
struct AccountFileRef<'a> {
    directory: &'a str,
    credentials: &'a AccountCredentials,
}

#[derive(Serialize, Deserialize)]
struct CertificateFile {
    directory: String,
    chain: String,
    key: String,
}

/// The ACME state directory.
pub struct Files {
    dir: PathBuf,
}

impl Files {
    /// `state_dir/acme`; nothing is created until the first write.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("acme"),
        }
    }

    /// The account file.
    pub fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    /// The certificate file.
    pub fn certificate_path(&self) -> PathBuf {
        self.dir.join("certificate.json")
    }

    /// The stored account for `directory`; `None` if there is none, or only
    /// one for another server.
    pub fn load_account(&self, directory: &str) -> Result<Option<AccountCredentials>, FileError> {
        let Some(file) = read_json::<AccountFile>(&self.account_path())? else {
            return Ok(None);
        };
        Ok((file.directory == directory).then_some(file.credentials))
    }

    /// Stores the account for `directory`, replacing any other.
    pub fn save_account(
        &self,
        directory: &str,
        credentials: &AccountCredentials,
    ) -> Result<(), FileError> {
        let json = serde_json::to_vec_pretty(&AccountFileRef {
            directory,
            credentials,
        })
        .map_err(|e| encode_error(self.account_path(), e))?;
        self.write(&self.account_path(), &json)
    }

    /// The stored certificate from `directory`; `None` if there is none, or
    /// only one from another server.
    pub fn load_certificate(
        &self,
        directory: &str,
    ) -> Result<Option<StoredCertificate>, FileError> {
        let Some(file) = read_json::<CertificateFile>(&self.certificate_path())? else {
            return Ok(None);
        };
        Ok((file.directory == directory).then_some(StoredCertificate {
            chain: file.chain,
            key: file.key,
        }))
    }

    /// Stores the certificate from `directory`, replacing any other.
    pub fn save_certificate(
        &self,
        directory: &str,
        certificate: &StoredCertificate,
    ) -> Result<(), FileError> {
        let json = serde_json::to_vec_pretty(&CertificateFile {
            directory: directory.to_owned(),
            chain: certificate.chain.clone(),
            key: certificate.key.clone(),
        })
        .map_err(|e| encode_error(self.certificate_path(), e))?;
        self.write(&self.certificate_path(), &json)
    }

    /// Writes `path` (in the state directory) atomically, mode 0600.
    fn write(&self, path: &Path, contents: &[u8]) -> Result<(), FileError> {
        let io_err = |action, path: &Path| {
            let path = path.to_owned();
            move |source| FileError::Io {
                action,
                path,
                source,
            }
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err("create", &self.dir))?;
        // An existing directory keeps its mode through `create`: tighten it.
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("set the permissions of", &self.dir))?;

        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = self.dir.join(format!(".{name}.tmp"));
        // A leftover from a crash may have another mode, which `mode` would
        // not change: start from nothing.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &tmp)(e)),
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(io_err("write", &tmp))?;
        drop(file);
        fs::rename(&tmp, path).map_err(io_err("replace", path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync", &self.dir))
    }
}

fn encode_error(path: PathBuf, e: serde_json::Error) -> FileError {
    FileError::Io {
        action: "encode",
        path,
        source: io::Error::other(e),
    }
}

/// Reads and parses `path`; `None` if it does not exist.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, FileError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FileError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| FileError::Parse {
            path: path.to_owned(),
            source,
        })
}
