//! `gantry`: the command line for Gantry deployments.

mod lint;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gantry",
    version,
    about = "Deploy application revisions to EC2 and on-premises fleets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with appspec.yml files.
    Appspec {
        #[command(subcommand)]
        command: AppspecCommand,
    },
}

#[derive(Subcommand)]
enum AppspecCommand {
    /// Check an appspec file, a revision directory or a zip/tar/tgz bundle before you push it.
    ///
    /// Exits 0 when valid, 1 when invalid (one line per problem, naming the field),
    /// and 2 on usage or I/O errors.
    Lint {
        /// An appspec.yml file, a revision directory, or a bundle.
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Appspec {
            command: AppspecCommand::Lint { path },
        } => lint::run(&path),
    }
}
