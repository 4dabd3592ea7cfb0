//! `gantry appspec lint`: the checks CodeDeploy only makes on the host, made before push.

use gantry_core::appspec::{AppSpec, Problem, Problems};
use gantry_core::bundle::{self, BundleType, Limits};
use std::path::Path;
use std::process::ExitCode;

/// Exit codes: valid, invalid, could not check.
const VALID: u8 = 0;
const INVALID: u8 = 1;
const FAILED: u8 = 2;

enum Outcome {
    Valid(AppSpec),
    Invalid(Vec<Problem>),
}

pub fn run(path: &Path) -> ExitCode {
    match check(path) {
        Ok(Outcome::Valid(spec)) => {
            for warning in &spec.warnings {
                println!("warning: {warning}");
            }
            let scripts: usize = spec.hooks.iter().map(|(_, scripts)| scripts.len()).sum();
            println!(
                "{}: valid ({} files entries, {} permissions entries, {} hook scripts)",
                path.display(),
                spec.files.len(),
                spec.permissions.len(),
                scripts
            );
            ExitCode::from(VALID)
        }
        Ok(Outcome::Invalid(problems)) => {
            for problem in &problems {
                println!("error: {problem}");
            }
            eprintln!(
                "{}: {} problem{} found",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(INVALID)
        }
        Err(message) => {
            eprintln!("gantry: {message}");
            ExitCode::from(FAILED)
        }
    }
}

fn check(path: &Path) -> Result<Outcome, String> {
    let meta = std::fs::metadata(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if meta.is_dir() {
        return Ok(outcome(bundle::check_revision(path)));
    }
    let bundle_type = BundleType::detect(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    match bundle_type {
        None => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read {} as text: {error}", path.display()))?;
            Ok(outcome(AppSpec::parse(&text)))
        }
        Some(_) if meta.len() > bundle::MAX_VALIDATED_ARCHIVE_BYTES => {
            Ok(Outcome::Invalid(vec![Problem::new(
                "bundle",
                format!(
                    "the archive is {} bytes; Gantry takes bundles of up to {} MiB",
                    meta.len(),
                    bundle::MAX_VALIDATED_ARCHIVE_BYTES >> 20
                ),
            )]))
        }
        Some(bundle_type) => {
            let scratch = tempfile::tempdir()
                .map_err(|error| format!("cannot create a scratch directory: {error}"))?;
            match bundle::check_archive(path, bundle_type, scratch.path(), &Limits::default()) {
                Ok(result) => Ok(outcome(result)),
                Err(error) => Err(error.to_string()),
            }
        }
    }
}

fn outcome(result: Result<AppSpec, Problems>) -> Outcome {
    match result {
        Ok(spec) => Outcome::Valid(spec),
        Err(Problems(problems)) => Outcome::Invalid(problems),
    }
}
