//! Archives built member by member, with whatever names and links a test asks for.
//! The tar writer bypasses the `tar` crate's path checks on purpose: tests need the
//! `..`, absolute and link-escape members that real attackers write.

use std::io::{Cursor, Write};
use std::path::Path;

#[derive(Debug, Clone)]
pub enum Kind {
    File { data: Vec<u8>, mode: u32 },
    Dir,
    Symlink(String),
    HardLink(String),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
}

impl Entry {
    pub fn file(name: &str, data: &[u8]) -> Self {
        Self::file_with_mode(name, data, 0o644)
    }

    pub fn file_with_mode(name: &str, data: &[u8], mode: u32) -> Self {
        Self {
            name: name.to_owned(),
            kind: Kind::File {
                data: data.to_vec(),
                mode,
            },
        }
    }

    pub fn dir(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: Kind::Dir,
        }
    }

    pub fn symlink(name: &str, target: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: Kind::Symlink(target.to_owned()),
        }
    }

    pub fn hard_link(name: &str, target: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: Kind::HardLink(target.to_owned()),
        }
    }
}

/// Every file and directory under `dir`, named `prefix` + its relative path.
pub fn entries_of(dir: &Path, prefix: &str) -> anyhow::Result<Vec<Entry>> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(&current)?.collect::<Result<_, _>>()?;
        children.sort_by_key(|child| child.file_name());
        for child in children {
            let path = child.path();
            let relative = path.strip_prefix(dir)?.to_string_lossy().into_owned();
            let name = format!("{prefix}{relative}");
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                entries.push(Entry::dir(&format!("{name}/")));
                stack.push(path);
            } else if meta.is_file() {
                entries.push(Entry::file_with_mode(
                    &name,
                    &std::fs::read(&path)?,
                    meta.permissions().mode() & 0o7777,
                ));
            }
        }
    }
    Ok(entries)
}

pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        let (kind, data, mode, link): (tar::EntryType, &[u8], u32, Option<&str>) = match &entry.kind
        {
            Kind::File { data, mode } => (tar::EntryType::Regular, data, *mode, None),
            Kind::Dir => (tar::EntryType::Directory, &[], 0o755, None),
            Kind::Symlink(to) => (tar::EntryType::Symlink, &[], 0o777, Some(to)),
            Kind::HardLink(to) => (tar::EntryType::Link, &[], 0o644, Some(to)),
        };
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(1_700_000_000);
        let ustar = header.as_ustar_mut().expect("a ustar header");
        write_field(&mut ustar.name, &entry.name);
        if let Some(link) = link {
            write_field(&mut ustar.linkname, link);
        }
        header.set_cksum();
        builder.append(&header, data).expect("writing to memory");
    }
    builder.into_inner().expect("writing to memory")
}

fn write_field(field: &mut [u8], value: &str) {
    assert!(
        value.len() <= field.len(),
        "{value:?} is too long for a ustar header field"
    );
    field.fill(0);
    field[..value.len()].copy_from_slice(value.as_bytes());
}

pub fn tgz(entries: &[Entry]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&tar(entries)).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

pub fn zip(entries: &[Entry]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for entry in entries {
        match &entry.kind {
            Kind::File { data, mode } => {
                writer
                    .start_file(
                        entry.name.as_str(),
                        SimpleFileOptions::default().unix_permissions(*mode),
                    )
                    .expect("writing to memory");
                writer.write_all(data).expect("writing to memory");
            }
            Kind::Dir => writer
                .add_directory(entry.name.as_str(), SimpleFileOptions::default())
                .expect("writing to memory"),
            Kind::Symlink(to) => writer
                .add_symlink(
                    entry.name.as_str(),
                    to.as_str(),
                    SimpleFileOptions::default(),
                )
                .expect("writing to memory"),
            Kind::HardLink(_) => panic!("zip has no hard links"),
        }
    }
    writer.finish().expect("writing to memory").into_inner()
}
