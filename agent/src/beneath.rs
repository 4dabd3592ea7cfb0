//! Reaching paths under a directory others can write to, as an agent running as root must.
//!
//! The application's user owns files under the install destination, so any directory
//! there may be swapped for a symbolic link between two deployments (or during one).
//! Everything the agent changes there is reached from a directory it holds open, one
//! component at a time (`openat` with `O_NOFOLLOW`), and then acted on through that
//! directory (`mkdirat`, `unlinkat`, `fchown` on an opened file...), never through a path
//! the kernel would resolve again.
//!
//! A symbolic link on the way is followed only when nobody but the agent's own user
//! (root) could have put it there: the link is owned by that user and so is the directory
//! holding it, which no one else may write to (or which is sticky). A host's own links
//! (`/var/www -> /data/www`) pass; a link the application's user made, or moved, is
//! refused with [`Refused::Link`], naming it.

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// How many links one walk may follow, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// Why a path was not reached.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "{path} is a symbolic link (to {target}) that a user other than root could have made or moved there; the agent follows only links owned by root in directories only root can change, so it does not write, change or remove anything through it (make it a real directory, or point the appspec at the link's target)"
    )]
    Link { path: PathBuf, target: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: more than {MAX_LINKS} symbolic links")]
    TooManyLinks { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Refused {
    fn io(path: &Path, errno: Errno) -> Self {
        Refused::Io {
            path: path.to_owned(),
            source: errno.into(),
        }
    }
}

/// An open directory, and the path it was reached by (for messages).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens a directory the agent trusts (its install root, `/`), following links.
    pub fn open(path: &Path) -> Result<Dir, Refused> {
        let fd = openat(
            nix::fcntl::AT_FDCWD,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| Refused::io(path, errno))?;
        Ok(Dir {
            fd,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The same directory at a path the kernel resolves to it whatever happens to the
    /// path it was reached by: for tools that take a path (`setfacl`), and for
    /// `std::fs::remove_dir_all` (which does not follow links below it).
    pub fn proc_path(&self, name: &OsStr) -> PathBuf {
        Path::new(&format!("/proc/self/fd/{}", self.fd.as_raw_fd())).join(name)
    }

    /// The entry `name` in this directory, not following a link: `None` when it is missing.
    pub fn stat(&self, name: &OsStr) -> Result<Option<Stat>, Refused> {
        match fstatat(self.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Stat(stat))),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(Refused::io(&self.path.join(name), errno)),
        }
    }

    /// The directory `name` in this one: `None` when it is missing.
    pub fn child(&self, name: &OsStr) -> Result<Option<Dir>, Refused> {
        self.child_counted(name, &mut 0)
    }

    /// The directory at `relative` (a path of plain components) under this one: `None`
    /// when a component is missing.
    pub fn descend(&self, relative: &Path) -> Result<Option<Dir>, Refused> {
        let mut links = 0;
        self.walk(relative, &mut links)
    }

    pub fn try_clone(&self) -> Result<Dir, Refused> {
        let fd = self.fd.try_clone().map_err(|source| Refused::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(Dir {
            fd,
            path: self.path.clone(),
        })
    }

    fn walk(&self, relative: &Path, links: &mut usize) -> Result<Option<Dir>, Refused> {
        let mut current = if relative.is_absolute() {
            Dir::open(Path::new("/"))?
        } else {
            self.try_clone()?
        };
        for component in relative.components() {
            current = match component {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
                Component::ParentDir => {
                    // `..` of an open directory is its real parent, never a link.
                    let fd = openat(
                        current.fd(),
                        "..",
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|errno| Refused::io(&current.path, errno))?;
                    let mut path = current.path.clone();
                    path.pop();
                    Dir { fd, path }
                }
                Component::Normal(name) => match current.child_counted(name, links)? {
                    Some(dir) => dir,
                    None => return Ok(None),
                },
            };
        }
        Ok(Some(current))
    }

    fn child_counted(&self, name: &OsStr, links: &mut usize) -> Result<Option<Dir>, Refused> {
        let path = self.path.join(name);
        let opened = openat(
            self.fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        match opened {
            Ok(fd) => Ok(Some(Dir { fd, path })),
            Err(Errno::ENOENT) => Ok(None),
            // A link (ELOOP), or not a directory at all (ENOTDIR).
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let Some(stat) = self.stat(name)? else {
                    return Ok(None);
                };
                if !stat.is_symlink() {
                    return Err(Refused::NotADirectory { path });
                }
                let target = PathBuf::from(
                    readlinkat(self.fd(), name).map_err(|errno| Refused::io(&path, errno))?,
                );
                if !self.trusted_link(&stat)? {
                    return Err(Refused::Link { path, target });
                }
                *links += 1;
                if *links > MAX_LINKS {
                    return Err(Refused::TooManyLinks { path });
                }
                match self.walk(&target, links)? {
                    Some(mut dir) => {
                        dir.path = path;
                        Ok(Some(dir))
                    }
                    None => Ok(None),
                }
            }
            Err(errno) => Err(Refused::io(&path, errno)),
        }
    }

    /// A link only the agent's user could have put here: owned by it, in a directory
    /// owned by it that nobody else may change (or that is sticky, so nobody else may
    /// move the agent's link).
    fn trusted_link(&self, link: &Stat) -> Result<bool, Refused> {
        let me = nix::unistd::geteuid().as_raw();
        let dir = fstat(self.fd()).map_err(|errno| Refused::io(&self.path, errno))?;
        let dir_mode = dir.st_mode as u32;
        let others_may_write = dir_mode & 0o022 != 0 && dir_mode & 0o1000 == 0;
        Ok(link.0.st_uid == me && dir.st_uid == me && !others_may_write)
    }
}

/// An entry's status, not following a link.
#[derive(Debug, Clone, Copy)]
pub struct Stat(pub FileStat);

impl Stat {
    fn kind(&self) -> SFlag {
        SFlag::from_bits_truncate(self.0.st_mode & SFlag::S_IFMT.bits())
    }
    pub fn is_symlink(&self) -> bool {
        self.kind() == SFlag::S_IFLNK
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == SFlag::S_IFDIR
    }
    pub fn is_file(&self) -> bool {
        self.kind() == SFlag::S_IFREG
    }
}
