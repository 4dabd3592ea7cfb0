//! The agent's own files: state, logs, downloaded and unpacked revisions. They may hold
//! secrets (a bundle's configuration before Install gives it its final mode), so they are
//! root's alone whatever the umask: directories 0750, files 0640. Installed application
//! files are not made here: their modes come from the bundle and the appspec.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const DIR_MODE: u32 = 0o750;
pub const FILE_MODE: u32 = 0o640;

/// Creates `dir` and its missing parents as 0750. A directory that exists is left as it
/// is: `log_dir` or `root_dir` may be one the host shares (`/var/log`).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// As [`create_dir_all`], for a directory that is the agent's alone (inside `root_dir`):
/// one an older agent made 0755 becomes 0750.
pub fn own_dir(dir: &Path) -> io::Result<()> {
    create_dir_all(dir)?;
    restrict(dir, DIR_MODE)
}

/// Creates (or truncates) a file, 0640, in a directory made as [`create_dir_all`].
pub fn create(path: &Path) -> io::Result<File> {
    open(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
    )
}

/// Opens a file to append to, creating it 0640.
pub fn append(path: &Path) -> io::Result<File> {
    open(path, OpenOptions::new().append(true).create(true))
}

fn open(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        create_dir_all(dir)?;
    }
    let file = options.mode(FILE_MODE).open(path)?;
    let meta = file.metadata()?;
    if meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o7777 != FILE_MODE {
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(file)
}

/// Writes a whole file under a temporary name, then renames it into place, so a crash
/// never leaves half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // The whole name plus a suffix: `with_extension` would give `d-1.reports` and
    // `d-1.running` the same temporary file, and two writers would mix.
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let mut file = create(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&partial, path)?;
    sync_parent(path);
    Ok(())
}

/// Makes a rename or a new file in `path`'s directory durable; best effort.
pub fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

fn restrict(dir: &Path, mode: u32) -> io::Result<()> {
    let meta = fs::metadata(dir)?;
    if meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o7777 != mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}
