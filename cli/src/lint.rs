//! `gantry appspec lint`: the checks CodeDeploy only makes on the host, made before push.
//!
//! An appspec file is read as the kind [`appspec::detect`] says it is: an AWS Lambda
//! appspec is checked by the Lambda parser, anything else as EC2/On-Premises. Directories
//! and bundles are EC2/On-Premises revisions (a Lambda revision is the appspec alone).

use gantry_core::appspec::lambda::LambdaAppSpec;
use gantry_core::appspec::{self, AppSpec, AppSpecKind, Problem, Problems};
use gantry_core::bundle::{self, BundleType, Limits};
use std::path::Path;
use std::process::ExitCode;

/// Exit codes: valid, invalid, could not check.
const VALID: u8 = 0;
const INVALID: u8 = 1;
const FAILED: u8 = 2;

enum Outcome {
    Valid(AppSpec),
    ValidLambda(LambdaAppSpec),
    Invalid(AppSpecKind, Vec<Problem>),
}

pub fn run(path: &Path) -> ExitCode {
    match check(path) {
        Ok(Outcome::Valid(spec)) => {
            for warning in &spec.warnings {
                println!("warning: {warning}");
            }
            let scripts: usize = spec.hooks.iter().map(|(_, scripts)| scripts.len()).sum();
            println!(
                "{}: valid ({} files entries, {} permissions entries, {} hook scripts), checked as an {} appspec",
                path.display(),
                spec.files.len(),
                spec.permissions.len(),
                scripts,
                AppSpecKind::Ec2OnPremises
            );
            ExitCode::from(VALID)
        }
        Ok(Outcome::ValidLambda(spec)) => {
            let function = &spec.function;
            let hooks: Vec<String> = spec
                .hooks()
                .map(|(hook, runs)| format!("{hook} runs {runs}"))
                .collect();
            println!(
                "{}: valid (function {}, alias {}, version {} to {}; {}), checked as an {} appspec",
                path.display(),
                function.name,
                function.alias,
                function.current_version,
                function.target_version,
                if hooks.is_empty() {
                    "no hooks".to_owned()
                } else {
                    hooks.join(", ")
                },
                AppSpecKind::Lambda
            );
            ExitCode::from(VALID)
        }
        Ok(Outcome::Invalid(kind, problems)) => {
            for problem in &problems {
                println!("error: {problem}");
            }
            eprintln!(
                "{}: {} problem{} found, checked as an {kind} appspec",
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
            Ok(match appspec::detect(&text) {
                AppSpecKind::Lambda => match LambdaAppSpec::parse(&text) {
                    Ok(spec) => Outcome::ValidLambda(spec),
                    Err(Problems(problems)) => Outcome::Invalid(AppSpecKind::Lambda, problems),
                },
                AppSpecKind::Ec2OnPremises => outcome(AppSpec::parse(&text)),
            })
        }
        Some(_) if meta.len() > bundle::MAX_VALIDATED_ARCHIVE_BYTES => Ok(Outcome::Invalid(
            AppSpecKind::Ec2OnPremises,
            vec![Problem::new(
                "bundle",
                format!(
                    "the archive is {} bytes; Gantry takes bundles of up to {} MiB",
                    meta.len(),
                    bundle::MAX_VALIDATED_ARCHIVE_BYTES >> 20
                ),
            )],
        )),
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
        Err(Problems(problems)) => Outcome::Invalid(AppSpecKind::Ec2OnPremises, problems),
    }
}
