use super::*;

#[test]
fn member_paths() {
    assert_eq!(member_path("./a/b.txt").unwrap(), PathBuf::from("a/b.txt"));
    assert_eq!(member_path("a//b/").unwrap(), PathBuf::from("a/b"));
    assert_eq!(member_path("./").unwrap(), PathBuf::new());
    assert!(member_path("/etc/passwd").is_err());
    assert!(member_path("C:/x").is_err());
    assert!(member_path("a/../../x").is_err());
    assert!(member_path("a\\..\\..\\x").is_err());
    assert!(member_path("..").is_err());
}

#[test]
fn link_targets() {
    assert!(check_link_target(Path::new("a/b/link"), "../c").is_ok());
    assert!(check_link_target(Path::new("a/link"), "..").is_ok());
    assert!(check_link_target(Path::new("a/link"), "../..").is_err());
    assert!(check_link_target(Path::new("link"), "/etc/passwd").is_err());
    assert!(check_link_target(Path::new("link"), "").is_err());
    assert!(check_link_target(Path::new("link"), "x/./y").is_ok());
}

#[test]
fn sniffs_bundle_types() {
    assert_eq!(BundleType::sniff(b"PK\x03\x04rest"), Some(BundleType::Zip));
    assert_eq!(BundleType::sniff(&[0x1f, 0x8b, 8]), Some(BundleType::Tgz));
    let mut tar = vec![0u8; 512];
    tar[257..262].copy_from_slice(b"ustar");
    assert_eq!(BundleType::sniff(&tar), Some(BundleType::Tar));
    assert_eq!(BundleType::sniff(b"version: 0.0"), None);
}

fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_cksum();
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn unpack_bytes(
    bytes: &[u8],
    kind: BundleType,
    limits: &Limits,
) -> (tempfile::TempDir, PathBuf, Result<Unpacked, BundleError>) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bundle");
    fs::write(&archive, bytes).unwrap();
    let target = dir.path().join("out");
    let result = unpack(&archive, kind, &target, limits);
    (dir, target, result)
}

#[test]
fn unpacked_files_and_directories_are_never_group_or_world_writable() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o777);
    dir.set_cksum();
    builder.append_data(&mut dir, "scripts/", &[][..]).unwrap();
    let bytes = {
        for (name, data, mode) in [
            ("appspec.yml", &b"version: 0.0\nos: linux\n"[..], 0o666),
            ("scripts/stop.sh", b"#!/bin/sh\n", 0o777),
            ("deep/er/x.txt", b"x", 0o622),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(mode);
            header.set_cksum();
            builder.append_data(&mut header, name, data).unwrap();
        }
        builder.into_inner().unwrap()
    };
    let (_dir, target, result) = unpack_bytes(&bytes, BundleType::Tar, &Limits::default());
    result.unwrap();
    let mode = |path: &str| {
        fs::metadata(target.join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("appspec.yml"), 0o644);
    assert_eq!(mode("scripts/stop.sh"), 0o755);
    assert_eq!(mode("deep/er/x.txt"), 0o600);
    for dir in ["scripts", "deep", "deep/er"] {
        assert_eq!(mode(dir), UNPACKED_DIR_MODE, "{dir}");
    }
}

#[test]
fn unpacks_keeping_modes_and_hoists_a_wrapping_directory() {
    let bytes = tar_of(&[
        ("app-1.0/appspec.yml", b"version: 0.0\nos: linux\n", 0o644),
        ("app-1.0/scripts/start.sh", b"#!/bin/sh\n", 0o4755),
        (
            "app-1.0/app-1.0/nested.txt",
            b"same name as the wrapper",
            0o600,
        ),
    ]);
    let (_dir, target, result) = unpack_bytes(&bytes, BundleType::Tar, &Limits::default());
    let unpacked = result.unwrap();
    assert_eq!(unpacked.hoisted.as_deref(), Some("app-1.0"));
    assert_eq!(unpacked.entries, 3);
    assert!(target.join("appspec.yml").is_file());
    assert!(target.join("app-1.0/nested.txt").is_file());
    let mode = fs::metadata(target.join("scripts/start.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "exec bits kept, setuid dropped");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 3);
}

#[test]
fn no_hoist_without_appspec_in_the_single_directory() {
    let bytes = tar_of(&[("only/readme.txt", b"x", 0o644)]);
    let (_dir, target, result) = unpack_bytes(&bytes, BundleType::Tar, &Limits::default());
    assert_eq!(result.unwrap().hoisted, None);
    assert!(target.join("only/readme.txt").is_file());
    assert!(check_revision(&target).is_err());
}

#[test]
fn later_duplicate_members_replace_earlier_ones() {
    let bytes = tar_of(&[("a.txt", b"first", 0o644), ("a.txt", b"second", 0o644)]);
    let (_dir, target, result) = unpack_bytes(&bytes, BundleType::Tar, &Limits::default());
    result.unwrap();
    assert_eq!(fs::read_to_string(target.join("a.txt")).unwrap(), "second");
}

#[test]
fn entry_limit_is_enforced_and_the_target_removed() {
    let bytes = tar_of(&[("a", b"1", 0o644), ("b", b"2", 0o644), ("c", b"3", 0o644)]);
    let limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 2,
    };
    let (_dir, target, result) = unpack_bytes(&bytes, BundleType::Tar, &limits);
    assert!(matches!(
        result,
        Err(BundleError::TooManyEntries { limit: 2 })
    ));
    assert!(!target.exists());
}

#[test]
fn size_limit_stops_a_compression_bomb() {
    let zeros = vec![0u8; 8 << 20];
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut encoder, &tar_of(&[("zeros", &zeros, 0o644)])).unwrap();
    let bytes = encoder.finish().unwrap();
    assert!(bytes.len() < 64 << 10, "a small archive");
    let limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 10,
    };
    let (_dir, target, result) = unpack_bytes(&bytes, BundleType::Tgz, &limits);
    assert!(matches!(result, Err(BundleError::TooLarge { limit }) if limit == 1 << 20));
    assert!(!target.exists());
}

#[test]
fn refuses_a_non_empty_target() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("x"), b"x").unwrap();
    fs::write(dir.path().join("bundle"), tar_of(&[("a", b"1", 0o644)])).unwrap();
    let result = unpack(
        &dir.path().join("bundle"),
        BundleType::Tar,
        dir.path(),
        &Limits::default(),
    );
    assert!(matches!(result, Err(BundleError::TargetNotEmpty(_))));
    assert!(
        dir.path().join("x").exists(),
        "nothing of the caller's is removed"
    );
}
