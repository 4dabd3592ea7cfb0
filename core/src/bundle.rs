//! Revision bundles: safe unpacking of zip, tar and tar.gz archives, and the checks that
//! a revision directory holds a valid appspec and everything it names.
//!
//! An archive is untrusted input. Nothing it contains may land outside the target
//! directory: members with absolute paths or `..` components are refused, as are
//! symbolic and hard links that point outside, and members that would be written through
//! a symbolic link. Limits on entry count and unpacked size stop archive bombs. On any
//! refusal the partly unpacked target is removed, and the error names the member.

use crate::appspec::{self, APPSPEC_FILE_NAMES, AppSpec, Problem, Problems};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

/// CodeDeploy's `bundleType` values for the EC2/on-premises platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleType {
    Zip,
    Tar,
    Tgz,
}

impl BundleType {
    pub const NAMES: [&str; 3] = ["zip", "tar", "tgz"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "zip" => Some(Self::Zip),
            "tar" => Some(Self::Tar),
            "tgz" => Some(Self::Tgz),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Tar => "tar",
            Self::Tgz => "tgz",
        }
    }

    /// Recognises an archive by its first bytes: the zip local header, the gzip magic, or
    /// the `ustar` mark of a POSIX tar header.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Some(Self::Zip)
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Some(Self::Tgz)
        } else if head.len() >= 262 && &head[257..262] == b"ustar" {
            Some(Self::Tar)
        } else {
            None
        }
    }

    /// Reads the start of a file and sniffs its type.
    pub fn detect(path: &Path) -> io::Result<Option<Self>> {
        let mut head = Vec::with_capacity(512);
        File::open(path)?.take(512).read_to_end(&mut head)?;
        Ok(Self::sniff(&head))
    }
}

/// The largest bundle (archive bytes) the control plane takes. RegisterApplicationRevision
/// and CreateDeployment download and check a bundle before recording it, inside functions
/// of [`VALIDATING_FUNCTION_MEMORY_MB`] and a 30 s timeout: at the rate measured in
/// bench/README.md ("Validating bundles"), 1 GiB is checked in well under half of it.
/// A larger bundle is refused before it is downloaded, naming this limit; hosts take up
/// to [`Limits::default`]'s 4 GiB of unpacked files.
pub const MAX_VALIDATED_ARCHIVE_BYTES: u64 = 1024 * 1024 * 1024;

/// The memory of the functions that validate bundles (push, create-deployment, api):
/// Lambda gives a function CPU in proportion to its memory, one vCPU at 1,769 MB, and
/// unpacking a bundle is CPU-bound.
pub const VALIDATING_FUNCTION_MEMORY_MB: u64 = 1769;

/// How much an archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of regular files.
    pub max_bytes: u64,
    /// Members of any kind.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024 * 1024,
            max_entries: 100_000,
        }
    }
}

/// What an unpacked archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub entries: u64,
    pub bytes: u64,
    /// The top-level directory that was hoisted to the root, if there was one.
    pub hoisted: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("archive member {member:?} refused: {reason}")]
    UnsafeMember { member: String, reason: String },
    #[error("archive member {member:?} refused: {kind} entries are not allowed in a revision")]
    UnsupportedEntry { member: String, kind: String },
    #[error("archive has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("archive is not a readable {bundle_type}: {message}")]
    Corrupt {
        bundle_type: &'static str,
        message: String,
    },
    #[error("target directory {0} already exists and is not empty")]
    TargetNotEmpty(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> BundleError {
    let context = context.into();
    move |source| BundleError::Io { context, source }
}

fn unsafe_member(member: &str, reason: impl Into<String>) -> BundleError {
    BundleError::UnsafeMember {
        member: member.to_owned(),
        reason: reason.into(),
    }
}

/// Unpacks `archive` into `target`, which must not exist or be empty. Hoists a single
/// top-level directory that holds the appspec. On error, removes what it unpacked.
pub fn unpack(
    archive: &Path,
    bundle_type: BundleType,
    target: &Path,
    limits: &Limits,
) -> Result<Unpacked, BundleError> {
    match fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BundleError::TargetNotEmpty(target.to_owned()));
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(target)
                .map_err(io_error(format!("creating {}", target.display())))?;
        }
        Err(error) => return Err(io_error(format!("reading {}", target.display()))(error)),
    }
    let mut writer = Writer {
        target: target.to_owned(),
        limits: *limits,
        entries: 0,
        bytes: 0,
        symlinks: Vec::new(),
    };
    let result = (|| {
        let file =
            File::open(archive).map_err(io_error(format!("opening {}", archive.display())))?;
        match bundle_type {
            BundleType::Zip => unpack_zip(file, &mut writer)?,
            BundleType::Tar => unpack_tar(BufReader::new(file), bundle_type, &mut writer)?,
            BundleType::Tgz => unpack_tar(
                flate2::read::GzDecoder::new(BufReader::new(file)),
                bundle_type,
                &mut writer,
            )?,
        }
        writer.verify_symlinks()?;
        let hoisted = hoist_single_directory(target)?;
        Ok(Unpacked {
            entries: writer.entries,
            bytes: writer.bytes,
            hoisted,
        })
    })();
    if result.is_err() {
        // remove_dir_all does not follow symbolic links, so this stays inside `target`.
        let _ = fs::remove_dir_all(target);
    }
    result
}

/// The kinds of member a revision may hold.
enum Member<'a> {
    Directory,
    File {
        mode: u32,
        contents: &'a mut dyn Read,
    },
    Symlink {
        to: String,
    },
    HardLink {
        to: String,
    },
}

struct Writer {
    target: PathBuf,
    limits: Limits,
    entries: u64,
    bytes: u64,
    /// Symbolic links created, to check once every member is in place.
    symlinks: Vec<(String, PathBuf)>,
}

impl Writer {
    fn add(&mut self, name: &str, member: Member<'_>) -> Result<(), BundleError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(BundleError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        let relative = member_path(name).map_err(|reason| unsafe_member(name, reason))?;
        if relative.as_os_str().is_empty() {
            return Ok(()); // the archive's own root, `./`
        }
        let path = self.target.join(&relative);
        self.make_parents(name, &relative)?;
        let existing = fs::symlink_metadata(&path).ok();
        if let Some(meta) = &existing {
            if meta.file_type().is_symlink() {
                return Err(unsafe_member(
                    name,
                    format!(
                        "it would be written through the symbolic link {}",
                        relative.display()
                    ),
                ));
            }
            let both_directories = meta.is_dir() && matches!(member, Member::Directory);
            if meta.is_dir() && !both_directories {
                return Err(unsafe_member(
                    name,
                    "a directory of the same name is already in the archive",
                ));
            }
            if !meta.is_dir() {
                // A later member of the same name replaces the earlier one, as tar does.
                fs::remove_file(&path)
                    .map_err(io_error(format!("replacing {}", relative.display())))?;
            }
        }
        match member {
            Member::Directory => {
                if existing.is_none() {
                    create_dir(&path, &relative)?;
                }
            }
            Member::File { mode, contents } => {
                // Keep the archive's permission bits, minus setuid/setgid/sticky and any
                // group or world write (see [`UNPACKED_FILE_BITS`]), and always let the
                // owner read and write so later cleanup works.
                let mode = (mode & UNPACKED_FILE_BITS) | 0o600;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&path)
                    .map_err(io_error(format!("creating {}", relative.display())))?;
                let room = self.limits.max_bytes - self.bytes;
                let written = io::copy(&mut contents.take(room + 1), &mut file)
                    .map_err(io_error(format!("unpacking {name}")))?;
                if written > room {
                    return Err(BundleError::TooLarge {
                        limit: self.limits.max_bytes,
                    });
                }
                self.bytes += written;
                // The umask may have trimmed the mode given to open.
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_error(
                    format!("setting the mode of {}", relative.display()),
                ))?;
            }
            Member::Symlink { to } => {
                check_link_target(&relative, &to).map_err(|reason| unsafe_member(name, reason))?;
                symlink(&to, &path)
                    .map_err(io_error(format!("creating link {}", relative.display())))?;
                self.symlinks.push((name.to_owned(), path));
            }
            Member::HardLink { to } => {
                let source_relative = member_path(&to).map_err(|reason| {
                    unsafe_member(name, format!("its link target {to:?} is refused: {reason}"))
                })?;
                self.check_no_symlink_in(name, &source_relative)?;
                let source = self.target.join(&source_relative);
                match fs::symlink_metadata(&source) {
                    Ok(meta) if meta.is_file() => {}
                    _ => {
                        return Err(unsafe_member(
                            name,
                            format!(
                                "its link target {to:?} is not a file unpacked earlier from the archive"
                            ),
                        ));
                    }
                }
                fs::hard_link(&source, &path)
                    .map_err(io_error(format!("linking {}", relative.display())))?;
            }
        }
        Ok(())
    }

    /// Creates the member's parent directories, refusing to pass through a symbolic link
    /// or a file.
    fn make_parents(&self, name: &str, relative: &Path) -> Result<(), BundleError> {
        let mut dir = self.target.clone();
        let parent_components = relative
            .parent()
            .map(|p| p.components().count())
            .unwrap_or(0);
        for component in relative.components().take(parent_components) {
            dir.push(component);
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(unsafe_member(
                        name,
                        format!(
                            "it would be written through the symbolic link {}",
                            dir.strip_prefix(&self.target).unwrap_or(&dir).display()
                        ),
                    ));
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(unsafe_member(
                        name,
                        "a file in the archive stands where its directory should be",
                    ));
                }
                Err(_) => {
                    create_dir(&dir, dir.strip_prefix(&self.target).unwrap_or(&dir))?;
                }
            }
        }
        Ok(())
    }

    fn check_no_symlink_in(&self, name: &str, relative: &Path) -> Result<(), BundleError> {
        let mut dir = self.target.clone();
        for component in relative.components() {
            dir.push(component);
            if fs::symlink_metadata(&dir).is_ok_and(|meta| meta.file_type().is_symlink()) {
                return Err(unsafe_member(
                    name,
                    "its link target passes through a symbolic link",
                ));
            }
        }
        Ok(())
    }

    /// Lexical checks cannot see links that point through other links (`a -> .` then
    /// `b -> a/..`), so once everything is unpacked each link that resolves is resolved
    /// for real and must stay inside the target.
    fn verify_symlinks(&self) -> Result<(), BundleError> {
        let root = fs::canonicalize(&self.target)
            .map_err(io_error(format!("resolving {}", self.target.display())))?;
        for (name, path) in &self.symlinks {
            if let Ok(resolved) = fs::canonicalize(path)
                && !resolved.starts_with(&root)
            {
                return Err(unsafe_member(
                    name,
                    "it is a symbolic link that resolves outside the archive",
                ));
            }
        }
        Ok(())
    }
}

/// The permission bits an unpacked file keeps of its archive's: no setuid, setgid or
/// sticky bit, and no group or world write. Whoever unpacks (the agent, as root) owns
/// what it unpacks, and no one else may change it: a script run as another user reads
/// the revision it runs from, and must not be able to rewrite a script, or the appspec,
/// that a later event runs as root.
pub const UNPACKED_FILE_BITS: u32 = 0o755;

/// The mode of every directory an unpack makes, whatever the archive says and whatever
/// the umask: see [`UNPACKED_FILE_BITS`].
pub const UNPACKED_DIR_MODE: u32 = 0o755;

fn create_dir(path: &Path, relative: &Path) -> Result<(), BundleError> {
    fs::create_dir(path).map_err(io_error(format!("creating {}", relative.display())))?;
    // Not left to the umask, which may allow more.
    fs::set_permissions(path, fs::Permissions::from_mode(UNPACKED_DIR_MODE)).map_err(io_error(
        format!("setting the mode of {}", relative.display()),
    ))
}

/// Turns a member name into a path relative to the target, refusing absolute paths and
/// `..`. Backslashes count as separators, since zip files made on Windows use them.
fn member_path(name: &str) -> Result<PathBuf, String> {
    let unified = name.replace('\\', "/");
    let bytes = unified.as_bytes();
    if unified.starts_with('/')
        || (bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':')
    {
        return Err("it has an absolute path".to_owned());
    }
    let mut path = PathBuf::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("its path contains a `..` component".to_owned()),
            part if part.contains('\0') => return Err("its path contains a NUL byte".to_owned()),
            part => path.push(part),
        }
    }
    Ok(path)
}

/// A symbolic link must be relative and, resolved from where it stands, stay inside.
fn check_link_target(link: &Path, to: &str) -> Result<(), String> {
    if to.is_empty() {
        return Err("it is a symbolic link with an empty target".to_owned());
    }
    let to_path = Path::new(to);
    if to_path.is_absolute() {
        return Err(format!("it is a symbolic link to the absolute path {to:?}"));
    }
    let mut depth: Vec<&std::ffi::OsStr> = link
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect();
    for component in to_path.components() {
        match component {
            Component::Normal(part) => depth.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return Err(format!(
                        "it is a symbolic link to {to:?}, outside the archive"
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("it is a symbolic link to the absolute path {to:?}"));
            }
        }
    }
    Ok(())
}

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

fn unpack_zip(file: File, writer: &mut Writer) -> Result<(), BundleError> {
    let corrupt = |error: zip::result::ZipError| BundleError::Corrupt {
        bundle_type: "zip",
        message: error.to_string(),
    };
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(corrupt)?;
    if archive.len() as u64 > writer.limits.max_entries {
        return Err(BundleError::TooManyEntries {
            limit: writer.limits.max_entries,
        });
    }
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(corrupt)?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let mode = entry.unix_mode().unwrap_or(0o644);
        if entry.is_dir() {
            writer.add(&name, Member::Directory)?;
        } else if mode & S_IFMT == S_IFLNK {
            let mut to = String::new();
            (&mut entry)
                .take(4096)
                .read_to_string(&mut to)
                .map_err(io_error(format!("reading link {name}")))?;
            writer.add(&name, Member::Symlink { to })?;
        } else {
            writer.add(
                &name,
                Member::File {
                    mode,
                    contents: &mut entry,
                },
            )?;
        }
    }
    Ok(())
}

fn unpack_tar(
    reader: impl Read,
    bundle_type: BundleType,
    writer: &mut Writer,
) -> Result<(), BundleError> {
    use tar::EntryType;
    let corrupt = |error: io::Error| BundleError::Corrupt {
        bundle_type: bundle_type.name(),
        message: error.to_string(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link_to = entry
            .link_name_bytes()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Directory => writer.add(&name, Member::Directory)?,
            EntryType::Regular | EntryType::Continuous => {
                let mode = entry.header().mode().unwrap_or(0o644);
                writer.add(
                    &name,
                    Member::File {
                        mode,
                        contents: &mut entry,
                    },
                )?
            }
            EntryType::Symlink => writer.add(
                &name,
                Member::Symlink {
                    to: link_to.unwrap_or_default(),
                },
            )?,
            EntryType::Link => writer.add(
                &name,
                Member::HardLink {
                    to: link_to.unwrap_or_default(),
                },
            )?,
            // Metadata records (PAX and GNU extensions) describe the next member.
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {}
            other => {
                return Err(BundleError::UnsupportedEntry {
                    member: name,
                    kind: format!("{other:?}").to_lowercase(),
                });
            }
        }
    }
    Ok(())
}

/// The appspec file at the root of a revision directory, if any.
pub fn find_appspec(root: &Path) -> Option<PathBuf> {
    APPSPEC_FILE_NAMES
        .iter()
        .map(|name| root.join(name))
        .find(|path| fs::symlink_metadata(path).is_ok_and(|meta| meta.is_file()))
}

/// GitHub archives and many build tools wrap a revision in one top-level directory.
/// When the root has no appspec and holds exactly one directory that has one, that
/// directory's contents become the root, as CodeDeploy does.
fn hoist_single_directory(target: &Path) -> Result<Option<String>, BundleError> {
    if find_appspec(target).is_some() {
        return Ok(None);
    }
    let entries: Vec<_> = fs::read_dir(target)
        .map_err(io_error(format!("reading {}", target.display())))?
        .collect::<Result<_, _>>()
        .map_err(io_error(format!("reading {}", target.display())))?;
    let [only] = entries.as_slice() else {
        return Ok(None);
    };
    let is_real_dir = only.file_type().is_ok_and(|kind| kind.is_dir());
    if !is_real_dir || find_appspec(&only.path()).is_none() {
        return Ok(None);
    }
    let name = only.file_name().to_string_lossy().into_owned();
    // Move the directory aside first: one of its children may share its name.
    let staging = target.join(format!(".gantry-hoist-{}", std::process::id()));
    fs::rename(only.path(), &staging).map_err(io_error("hoisting the top-level directory"))?;
    for child in fs::read_dir(&staging).map_err(io_error("hoisting the top-level directory"))? {
        let child = child.map_err(io_error("hoisting the top-level directory"))?;
        fs::rename(child.path(), target.join(child.file_name()))
            .map_err(io_error("hoisting the top-level directory"))?;
    }
    fs::remove_dir(&staging).map_err(io_error("hoisting the top-level directory"))?;
    Ok(Some(name))
}

/// Unpacks an archive under `scratch` and checks the revision in it: the check that
/// `gantry appspec lint` and push share. An unsafe archive or an invalid revision comes
/// back as problems; only I/O failures are errors.
pub fn check_archive(
    archive: &Path,
    bundle_type: BundleType,
    scratch: &Path,
    limits: &Limits,
) -> Result<Result<AppSpec, Problems>, BundleError> {
    let target = scratch.join("revision");
    match unpack(archive, bundle_type, &target, limits) {
        Ok(_) => Ok(check_revision(&target)),
        Err(error @ BundleError::Io { .. }) => Err(error),
        Err(refused) => Ok(Err(Problems(vec![Problem::new(
            "bundle",
            refused.to_string(),
        )]))),
    }
}

/// Reads and validates the appspec of an unpacked revision, and checks that every file
/// and script it names exists in the revision. Returns every problem found.
pub fn check_revision(root: &Path) -> Result<AppSpec, Problems> {
    check_revision_with(root, AppSpec::parse)
}

/// [`check_revision`] as a host checks a revision it was sent (see
/// [`AppSpec::parse_on_host`]).
pub fn check_revision_on_host(root: &Path) -> Result<AppSpec, Problems> {
    check_revision_with(root, AppSpec::parse_on_host)
}

fn check_revision_with(
    root: &Path,
    parse: fn(&str) -> Result<AppSpec, Problems>,
) -> Result<AppSpec, Problems> {
    let Some(path) = find_appspec(root) else {
        return Err(Problems(vec![Problem::new(
            "appspec",
            format!(
                "no {} at the root of the revision",
                APPSPEC_FILE_NAMES.join(" or ")
            ),
        )]));
    };
    let text = fs::read_to_string(&path).map_err(|error| {
        Problems(vec![Problem::new(
            "appspec",
            format!("cannot read {}: {error}", path.display()),
        )])
    })?;
    let spec = parse(&text)?;
    let mut missing = Vec::new();
    for (index, (field, named)) in spec.referenced_paths().into_iter().enumerate() {
        let Some(relative) = appspec::revision_relative(named) else {
            continue; // refused by AppSpec::parse already
        };
        // referenced_paths lists `files` sources first, then hook scripts.
        let is_script = index >= spec.files.len();
        match fs::metadata(root.join(relative)) {
            Ok(meta) if is_script && !meta.is_file() => {
                missing.push(Problem::new(
                    field,
                    format!("{named:?} is not a file in the revision"),
                ));
            }
            Ok(_) => {}
            Err(_) => missing.push(Problem::new(
                field,
                format!("{named:?} does not exist in the revision"),
            )),
        }
    }
    if missing.is_empty() {
        Ok(spec)
    } else {
        Err(Problems(missing))
    }
}

#[cfg(test)]
mod tests;
