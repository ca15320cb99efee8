//! `devicegate backup FILE`: a consistent copy of the live database in a new file.
//!
//! The copy holds password hashes, token hashes and pending codes, so its target is created
//! like a key file: mode 0600, exclusively (`O_EXCL`: never over an existing file) and
//! without following a symlink (`O_NOFOLLOW`), before any data is written. SQLite's
//! `VACUUM INTO` opens its output by name, so it writes into a private (0700) scratch
//! directory next to the target, and the result is copied into the file created here.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use super::admin::Failure;
use crate::store::{Backend, Store};

/// Writes the backup to `target`; with `force`, whatever is at `target` (a file or a
/// symlink, never a directory) is removed first. The target's directory must exist.
pub(super) fn run(store: &Store, target: &Path, force: bool) -> Result<(), Failure> {
    if store.backend() == Backend::Postgres {
        return Err(Failure::new(crate::store::PG_DUMP_ADVICE));
    }
    let shown = target.display();
    if force {
        match std::fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => {
                return Err(Failure::new(format!("{shown} is a directory")))
            }
            // Removes a symlink itself, never what it points to.
            Ok(_) => std::fs::remove_file(target)
                .map_err(|e| Failure::new(format!("cannot replace {shown}: {e}")))?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Failure::new(format!("cannot replace {shown}: {e}"))),
        }
    }
    let mut file = create_private(target)?;
    if let Err(failure) = fill(store, target, &mut file) {
        drop(file);
        // Ours, and empty or partial: leave nothing that looks like a backup.
        let _ = std::fs::remove_file(target);
        return Err(failure);
    }
    Ok(())
}

/// Opens a new file at `target`: 0600, `O_EXCL`, `O_NOFOLLOW`.
fn create_private(target: &Path) -> Result<File, Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(target).map_err(|e| {
        let shown = target.display();
        // O_EXCL refuses anything at the path, a dangling symlink included (EEXIST);
        // O_NOFOLLOW makes sure of the symlink case on its own (ELOOP).
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return Failure::new(format!(
                "{shown} is a symbolic link; pass --force to replace the link"
            ));
        }
        if e.kind() == ErrorKind::AlreadyExists {
            Failure::new(format!("{shown} exists; pass --force to replace it"))
        } else {
            Failure::new(format!("cannot create {shown}: {e}"))
        }
    })
}

/// `VACUUM INTO` a private scratch directory beside the target, then copy into `file`
/// and flush it to disk.
fn fill(store: &Store, target: &Path, file: &mut File) -> Result<(), Failure> {
    let io = |what: &str, e: std::io::Error| Failure::new(format!("{what}: {e}"));
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut scratch = tempfile::Builder::new();
    scratch.prefix(".devicegate-backup-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        scratch.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let scratch = scratch
        .tempdir_in(dir)
        .map_err(|e| io("cannot create a scratch directory", e))?;
    let copy = scratch.path().join("copy.db");
    store.backup_to(&copy)?;
    let mut source = File::open(&copy).map_err(|e| io("cannot read the copy", e))?;
    std::io::copy(&mut source, file)
        .map_err(|e| io(&format!("cannot write {}", target.display()), e))?;
    file.sync_all()
        .map_err(|e| io(&format!("cannot write {}", target.display()), e))?;
    Ok(())
}
