//! `gantry push DIR`: lint, bundle, upload to S3, register; or `gantry push --github
//! OWNER/REPO@COMMIT`: register a commit, which Gantry checks and pins to its full id.

use crate::client::Gantry;
use crate::output::Output;
use anyhow::Context;
use gantry_api::revision::RegisterApplicationRevisionOutput;
use gantry_core::bundle::{self, BundleType, Limits};
use gantry_core::wire::{GitHubLocation, RevisionLocation};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct PushArgs {
    /// The revision directory (its root holds appspec.yml).
    #[arg(required_unless_present = "github", requires = "s3")]
    dir: Option<PathBuf>,
    #[arg(long)]
    app: String,
    /// Where to upload the bundle: s3://bucket/key.
    #[arg(long, requires = "dir")]
    s3: Option<String>,
    /// Register a GitHub commit instead: OWNER/REPO@COMMIT (a full or abbreviated id).
    #[arg(long, conflicts_with_all = ["dir", "s3"])]
    github: Option<String>,
    /// A description recorded with the revision.
    #[arg(long)]
    description: Option<String>,
}

/// A GitHub revision from `OWNER/REPO@COMMIT`, checked as the control plane checks it;
/// `option` names where it was given.
pub fn github_revision(option: &str, given: &str) -> anyhow::Result<serde_json::Value> {
    let (repository, commit) = given.rsplit_once('@').with_context(|| {
        format!("{option}: expected OWNER/REPO@COMMIT, such as acme/shop@9f1c2e3, found {given:?}")
    })?;
    let revision = RevisionLocation::GitHub {
        git_hub_location: GitHubLocation {
            repository: repository.to_owned(),
            commit_id: commit.to_owned(),
        },
    };
    revision
        .validate()
        .map_err(|error| anyhow::anyhow!("{option}: {error}"))?;
    Ok(json!(revision))
}

pub async fn run(gantry: &Gantry, args: PushArgs, output: Output) -> anyhow::Result<ExitCode> {
    if let Some(given) = &args.github {
        let mut input = json!({
            "applicationName": args.app,
            "revision": github_revision("--github", given)?,
        });
        if let Some(description) = &args.description {
            input["description"] = json!(description);
        }
        let (registered, typed): (_, RegisterApplicationRevisionOutput) =
            gantry.invoke_typed("push", &input).await?;
        crate::output::show(output, &registered, |_| match &typed.revision {
            RevisionLocation::GitHub { git_hub_location } => format!(
                "registered GitHub {} at {}; deploy it with --revision github:{}@{}",
                git_hub_location.repository,
                git_hub_location.commit_id,
                git_hub_location.repository,
                git_hub_location.commit_id
            ),
            other => format!("registered {}", crate::output::pretty(other)),
        });
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(dir), Some(location)) = (&args.dir, &args.s3) else {
        anyhow::bail!(
            "give a revision directory and --s3 s3://bucket/key, or --github OWNER/REPO@COMMIT"
        );
    };
    let (bucket, key) = location
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .with_context(|| format!("--s3: expected s3://bucket/key, found {location:?}"))?;
    // The same checks the control plane makes, before anything is uploaded.
    if let Err(problems) = bundle::check_revision(dir) {
        for problem in &problems.0 {
            eprintln!("error: {problem}");
        }
        anyhow::bail!(
            "{} is not a deployable revision ({} problem{}); nothing was pushed",
            dir.display(),
            problems.0.len(),
            if problems.0.len() == 1 { "" } else { "s" }
        );
    }
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let archive = scratch.path().join("bundle.tgz");
    {
        let file = std::fs::File::create(&archive).context("writing the bundle")?;
        let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut builder = tar::Builder::new(encoder);
        builder.follow_symlinks(false);
        builder
            .append_dir_all(".", dir)
            .with_context(|| format!("bundling {}", dir.display()))?;
        builder.into_inner()?.finish()?;
    }
    // Check the archive itself too: what is uploaded is what gets deployed.
    let check = tempfile::tempdir()?;
    if let Err(problems) =
        bundle::check_archive(&archive, BundleType::Tgz, check.path(), &Limits::default())?
    {
        anyhow::bail!(
            "the bundle built from {} is not deployable: {problems}",
            dir.display()
        );
    }
    let size = std::fs::metadata(&archive)?.len();
    if size > bundle::MAX_VALIDATED_ARCHIVE_BYTES {
        anyhow::bail!(
            "the bundle built from {} is {size} bytes; Gantry takes bundles of up to {} MiB; nothing was pushed",
            dir.display(),
            bundle::MAX_VALIDATED_ARCHIVE_BYTES >> 20
        );
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&gantry.config)
            .force_path_style(true)
            .build(),
    );
    let body = aws_sdk_s3::primitives::ByteStream::from_path(&archive)
        .await
        .context("reading the bundle")?;
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body)
        .send()
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "uploading to {}: {}",
                location,
                aws_sdk_s3::error::DisplayErrorContext(error)
            )
        })?;
    let mut input = json!({
        "applicationName": args.app,
        "revision": {"revisionType": "S3", "s3Location": {"bucket": bucket, "key": key, "bundleType": "tgz"}},
    });
    if let Some(description) = &args.description {
        input["description"] = json!(description);
    }
    let (registered, typed): (_, RegisterApplicationRevisionOutput) =
        gantry.invoke_typed("push", &input).await?;
    crate::output::show(output, &registered, |_| {
        let place = match &typed.revision {
            RevisionLocation::S3 { s3_location } => format!(
                "s3://{}/{} (ETag {})",
                s3_location.bucket,
                s3_location.key,
                s3_location.e_tag.as_deref().unwrap_or("?")
            ),
            other => crate::output::pretty(other),
        };
        format!("pushed {} to {place}", dir.display())
    });
    Ok(ExitCode::SUCCESS)
}
