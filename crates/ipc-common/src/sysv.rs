//! System V IPC keys. The lecture's `ftok`: the creator makes a key file
//! (`/tmp/NAME.key`, exclusive, mode 0600) and both sides derive the key from it with
//! project id `'I'`, so every key this project uses starts with 0x49 and
//! `make clean-ipc` can find its objects in `ipcs`. The creator removes the key file.

use crate::cleanup::{self, Guard};
use crate::error::{Context, Error, Kind, Result};
use crate::narrate;
use ipc_sys as sys;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The `ftok` project id: the top byte of every key this project makes.
pub const PROJECT_ID: u8 = b'I';

/// A key file and the key derived from it.
pub struct KeyFile {
    pub path: PathBuf,
    pub key: libc::key_t,
    /// Set when this side created the file: it removes it.
    guard: Option<Guard>,
}

/// Where the key file for `name` lives (`suffix` tells helper objects apart, e.g. `sem`).
pub fn key_path(name: &str, suffix: Option<&str>) -> PathBuf {
    let file = match suffix {
        Some(s) => format!("{name}.{s}.key"),
        None => format!("{name}.key"),
    };
    std::env::temp_dir().join(file)
}

fn derive(path: &Path) -> Result<libc::key_t> {
    let key = sys::ftok(path, PROJECT_ID).on(&format!("key file {}", path.display()), "ftok")?;
    narrate::call(
        format_args!("ftok({path:?}, 'I') = {key:#010x}"),
        "SysV: a key names the object system-wide; ftok derives it from a file",
    );
    Ok(key)
}

impl KeyFile {
    /// Create the key file exclusively and derive the key. `Ok(None)`: it exists already
    /// (the peer's, or a stale one: the caller decides with [`KeyFile::open`]).
    pub fn create(path: &Path) -> Result<Option<KeyFile>> {
        let obj = format!("key file {}", path.display());
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {
                let p = path.to_path_buf();
                let rec = crate::record::Object::path(crate::record::Kind::KeyFile, path);
                let guard = cleanup::on_exit_recorded(obj, rec, move || {
                    let _ = std::fs::remove_file(&p);
                });
                Ok(Some(KeyFile {
                    path: path.to_path_buf(),
                    key: derive(path)?,
                    guard: Some(guard),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(Error::os(obj, "open(O_CREAT|O_EXCL, 0600)", e)),
        }
    }

    /// Create the key file with an exclusive `flock` already held on it, so that no
    /// other process ever sees it unlocked while its creator lives: the lock is the
    /// creator's sign of life, and a slow creator is never taken for a crashed one. The
    /// file is made (O_EXCL, O_NOFOLLOW, 0600) and locked under a private temporary
    /// name, then `link`ed to `path`, which fails if `path` exists. `Ok(None)`: it exists.
    pub fn create_locked(path: &Path) -> Result<Option<(KeyFile, Flock<File>)>> {
        let obj = format!("key file {}", path.display());
        let file_name = path
            .file_name()
            .map_or_else(|| "key".into(), |n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| Error::os(&obj, "open(O_CREAT|O_EXCL|O_NOFOLLOW, 0600)", e))?;
        let lock = match Flock::lock(f, FlockArg::LockExclusive) {
            Ok(l) => l,
            Err((_, e)) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::os(&obj, "flock(LOCK_EX)", e.into()));
            }
        };
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                let p = path.to_path_buf();
                let rec = crate::record::Object::path(crate::record::Kind::KeyFile, path);
                let guard = cleanup::on_exit_recorded(obj, rec, move || {
                    let _ = std::fs::remove_file(&p);
                });
                Ok(Some((
                    KeyFile {
                        path: path.to_path_buf(),
                        key: derive(path)?,
                        guard: Some(guard),
                    },
                    lock,
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(Error::os(obj, "link", e)),
        }
    }

    /// Derive the key from an existing key file, after checking it is a regular file of
    /// ours that no one else can write.
    pub fn open(path: &Path) -> Result<KeyFile> {
        let obj = format!("key file {}", path.display());
        let meta = std::fs::symlink_metadata(path).on(&obj, "stat")?;
        let me = nix::unistd::geteuid().as_raw();
        if !meta.file_type().is_file() || meta.uid() != me || meta.mode() & 0o022 != 0 {
            return Err(Error::new(
                Kind::Runtime,
                obj,
                format!(
                    "is not a key file of this user (type {:?}, uid {}, mode {:03o})",
                    meta.file_type(),
                    meta.uid(),
                    meta.mode() & 0o777
                ),
                format!(
                    "not touching it; remove it yourself (rm {}) or choose another --name",
                    path.display()
                ),
            ));
        }
        Ok(KeyFile {
            path: path.to_path_buf(),
            key: derive(path)?,
            guard: None,
        })
    }

    /// Did this side create the key file?
    pub fn created(&self) -> bool {
        self.guard.is_some()
    }

    /// Take over removing the file (a stale key file whose objects were replaced).
    pub fn adopt(&mut self) {
        if self.guard.is_none() {
            let p = self.path.clone();
            self.guard = Some(cleanup::on_exit_recorded(
                format!("key file {}", self.path.display()),
                crate::record::Object::path(crate::record::Kind::KeyFile, &self.path),
                move || {
                    let _ = std::fs::remove_file(&p);
                },
            ));
        }
    }

    /// The peer removed the key file (its signal that it has the key): stop owning it,
    /// so this side never removes a newer file of the same name.
    pub fn removed_by_peer(&mut self) {
        if let Some(g) = self.guard.take() {
            g.disarm();
        }
    }

    /// Remove the key file now (both sides have the key; the objects no longer need it).
    pub fn remove(&mut self) {
        if let Some(g) = self.guard.take() {
            drop(g);
            narrate::call(
                format_args!("unlink({:?}) = 0", self.path),
                "cleanup: the key file is no longer needed",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_project_id_and_match_on_both_sides() {
        let path = key_path(&format!("ipc-unit-key-{}", std::process::id()), None);
        let mut created = KeyFile::create(&path).unwrap().expect("new key file");
        assert!(
            KeyFile::create(&path).unwrap().is_none(),
            "second create sees it exists"
        );
        let opened = KeyFile::open(&path).unwrap();
        assert_eq!(created.key, opened.key);
        assert_eq!((created.key as u32) >> 24, u32::from(PROJECT_ID));
        created.remove();
        assert!(!path.exists());
    }
}
