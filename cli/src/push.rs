//! `gantry push DIR`: lint, bundle, upload to S3, register.

use crate::client::Gantry;
use crate::output::Output;
use anyhow::Context;
use gantry_api::revision::RegisterApplicationRevisionOutput;
use gantry_core::bundle::{self, BundleType, Limits};
use gantry_core::wire::RevisionLocation;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct PushArgs {
    /// The revision directory (its root holds appspec.yml).
    dir: PathBuf,
    #[arg(long)]
    app: String,
    /// Where to upload the bundle: s3://bucket/key.
    #[arg(long)]
    s3: String,
    /// A description recorded with the revision.
    #[arg(long)]
    description: Option<String>,
}

pub async fn run(gantry: &Gantry, args: PushArgs, output: Output) -> anyhow::Result<ExitCode> {
    let (bucket, key) = args
        .s3
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .with_context(|| format!("--s3: expected s3://bucket/key, found {:?}", args.s3))?;
    // The same checks the control plane makes, before anything is uploaded.
    if let Err(problems) = bundle::check_revision(&args.dir) {
        for problem in &problems.0 {
            eprintln!("error: {problem}");
        }
        anyhow::bail!(
            "{} is not a deployable revision ({} problem{}); nothing was pushed",
            args.dir.display(),
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
            .append_dir_all(".", &args.dir)
            .with_context(|| format!("bundling {}", args.dir.display()))?;
        builder.into_inner()?.finish()?;
    }
    // Check the archive itself too: what is uploaded is what gets deployed.
    let check = tempfile::tempdir()?;
    if let Err(problems) =
        bundle::check_archive(&archive, BundleType::Tgz, check.path(), &Limits::default())?
    {
        anyhow::bail!(
            "the bundle built from {} is not deployable: {problems}",
            args.dir.display()
        );
    }
    let size = std::fs::metadata(&archive)?.len();
    if size > bundle::MAX_VALIDATED_ARCHIVE_BYTES {
        anyhow::bail!(
            "the bundle built from {} is {size} bytes; Gantry takes bundles of up to {} MiB; nothing was pushed",
            args.dir.display(),
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
                args.s3,
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
        format!("pushed {} to {place}", args.dir.display())
    });
    Ok(ExitCode::SUCCESS)
}
