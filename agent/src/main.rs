//! `gantry-agent`: long-polls this host's command queue and carries out each command.

use anyhow::Context;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::Message;
use clap::Parser;
use gantry_agent::aws::{Revisions, S3Bundles, SqsReports};
use gantry_agent::config::{self, AgentConfig, Identity};
use gantry_agent::github::GitHubTarballs;
use gantry_agent::runner::{self, Host};
use gantry_core::wire::{Cancel, Command, HostMessage};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::Instrument;

/// How long a command is invisible to other receivers once this agent holds it: set as
/// soon as the command arrives and renewed every third of it while the command runs,
/// so a long hook never lets the command be delivered twice.
const VISIBILITY_SECS: i32 = 30;
/// How long a command is invisible when received. Short, because a long poll left open
/// by an agent that stopped (a restart, an upgrade) still takes the next command from
/// the queue and answers a closed connection: the command waits this long for the next
/// receive (the fleet benchmark's restarted agents waited 120 s, then 30 s, before).
const RECEIVE_VISIBILITY_SECS: i32 = 5;
/// When a running command with none held behind it first renews its visibility (one
/// with commands held behind it renews theirs and its own at once): well inside
/// [`RECEIVE_VISIBILITY_SECS`]. A command done sooner, its reports sent, never asks.
const FIRST_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// How long a stopped script's process group has between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// After a script was stopped, how much longer the runner may take to report and return.
const ABORT_WAIT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(name = "gantry-agent", version, about = "The Gantry host agent")]
struct Args {
    /// The agent's configuration file.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Subcommand>,
}

#[derive(clap::Subcommand)]
enum Subcommand {
    /// Check the configuration file and exit: 0 when valid, 1 with the bad key named.
    ValidateConfig,
}

// One thread is enough: the agent waits on the network or on a hook (on a blocking
// thread), and every idle thread costs resident memory on every host.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match AgentConfig::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gantry-agent: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Subcommand::ValidateConfig) = args.command {
        println!("{}: valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    if let Err(error) = init_logging(&config) {
        eprintln!(
            "gantry-agent: log_dir: cannot write {}: {error}",
            config.log_dir.display()
        );
        return ExitCode::FAILURE;
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("gantry-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Human-readable lines on stderr (the journal) and JSON lines, with the current
/// deployment's span fields, in `<log_dir>/gantry-agent.log`.
fn init_logging(config: &AgentConfig) -> std::io::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, fmt};
    // Root's alone (0640, in a 0750 directory when the agent makes it).
    let file = gantry_agent::private::append(&config.log_dir.join("gantry-agent.log"))?;
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter()),
        )
        .with(
            fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(std::sync::Mutex::new(file))
                .with_filter(filter()),
        )
        .init();
    Ok(())
}

struct Agent {
    config: AgentConfig,
    instance_id: String,
    sqs: aws_sdk_sqs::Client,
    s3: Arc<S3Bundles>,
    github: Arc<GitHubTarballs>,
    command_queue_url: String,
    reports: SqsReports,
    /// Set once a stop's grace is over: the runner stops its script and starts no event.
    abort: Arc<AtomicBool>,
    /// Commands received and not yet run (a receive takes up to ten messages, and the
    /// receive a running command keeps open takes what else comes), in order, kept
    /// invisible until their turn.
    held: std::sync::Mutex<Vec<Message>>,
}

/// The long poll of this host's command queue. There is at most one, and it outlives the
/// command that was running when it began: dropping a poll that SQS may still answer
/// would hide the message it takes until that message's visibility runs out.
type Receive = Pin<Box<dyn Future<Output = Result<Vec<Message>, String>> + Send>>;

async fn run(config: AgentConfig) -> anyhow::Result<()> {
    // AWS_ENDPOINT_URL and credentials come from the SDK's standard configuration.
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(config.region.clone()));
    if config.proxy.is_some() {
        loader = loader.http_client(gantry_agent::net::sdk_http_client(
            config.proxy_rules().map_err(anyhow::Error::msg)?,
        ));
    }
    // An on-premises host has no instance metadata service: its credentials come from
    // the environment or the profile files (keys, credential_process, SSO), and the
    // chain never builds the providers that probe IMDS or ECS.
    if let Identity::OnPremisesName(_) = &config.identity {
        use aws_config::environment::EnvironmentVariableCredentialsProvider;
        use aws_config::meta::credentials::CredentialsProviderChain;
        use aws_config::profile::ProfileFileCredentialsProvider;
        loader = loader.credentials_provider(
            CredentialsProviderChain::first_try(
                "Environment",
                EnvironmentVariableCredentialsProvider::new(),
            )
            .or_else("Profile", ProfileFileCredentialsProvider::builder().build()),
        );
    }
    let sdk = loader.load().await;
    let instance_id = match &config.identity {
        Identity::OnPremisesName(name) => name.clone(),
        Identity::Ec2 { metadata_endpoint } => ec2_instance_id(metadata_endpoint).await?,
    };
    let token = match (&config.github.token_file, &config.github.token_secret) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("github.token_file: reading {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        (None, Some(arn)) => Some(
            gantry_fetch::secret::read(&sdk, "github.token_secret", arn)
                .await
                .map_err(anyhow::Error::msg)?,
        ),
        (None, None) => None,
    };
    let github = GitHubTarballs::new(config.github_source(token).map_err(anyhow::Error::msg)?);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let command_queue = config
        .command_queue(&instance_id)
        .map_err(anyhow::Error::msg)?;
    let command_queue_url = match command_queue_url(&sqs, &command_queue).await? {
        Some(url) => url,
        None => return Ok(()), // asked to stop while waiting for it
    };
    let reports_queue_url = queue_url(&sqs, &config.reports_queue).await?;
    let sqs_reports = sqs.clone();
    let agent = Agent {
        s3: Arc::new(S3Bundles::new(&config).map_err(anyhow::Error::msg)?),
        github: Arc::new(github),
        config,
        instance_id,
        sqs,
        command_queue_url,
        reports: SqsReports::start(sqs_reports, reports_queue_url),
        abort: Arc::new(AtomicBool::new(false)),
        held: Default::default(),
    };
    tracing::info!(instance_id = %agent.instance_id, queue = %command_queue, "agent started");

    let recovered = agent
        .blocking(|host, _, reports| runner::recover(host, reports))
        .await?;
    agent
        .reports
        .all_sent()
        .await
        .map_err(anyhow::Error::msg)
        .context("reporting the events the last stop interrupted")?;
    for deployment_id in recovered {
        tracing::warn!(%deployment_id, "reported the event interrupted by the last stop as failed");
    }

    release_start_up_code();

    let mut stop = StopSignals {
        terminate: signal(SignalKind::terminate())?,
        interrupt: signal(SignalKind::interrupt())?,
    };
    let mut receiving: Option<Receive> = None;
    'polling: loop {
        // One at a time: the commands still waiting stay held, and the running command's
        // ticks keep them invisible.
        while let Some(message) = agent.next_held() {
            if agent.handle(message, &mut stop, &mut receiving).await == Handled::Stopping {
                break 'polling;
            }
        }
        let pending = receiving.get_or_insert_with(|| agent.receive());
        let received = tokio::select! {
            _ = stop.recv() => break,
            received = pending => received,
        };
        receiving = None;
        match received {
            // What waits on the queue comes together: a cancel of a command's
            // deployment is noted before that command runs.
            Ok(messages) => agent.take_in(messages, false).await,
            Err(error) => {
                tracing::error!(%error, "receiving commands failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    // What a run left waiting out the linger (one that ended in an error) leaves now.
    if let Err(error) = agent.reports.all_sent().await {
        tracing::warn!(%error, "reports not sent before stopping; a redelivered command re-sends its final reports");
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// SIGTERM (systemd's stop) and SIGINT, as one stream of stop requests.
struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Handled {
    Continue,
    /// A stop was asked for while the command ran: the agent exits now.
    Stopping,
}

impl Agent {
    /// Runs blocking work (the runner) with this agent's host and adapters.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Host<'_>, &Revisions, &SqsReports) -> Result<T, String> + Send + 'static,
    ) -> anyhow::Result<T> {
        let config = self.config.clone();
        let instance_id = self.instance_id.clone();
        let runtime = tokio::runtime::Handle::current();
        let source = Revisions {
            s3: self.s3.clone(),
            github: self.github.clone(),
            runtime,
        };
        let reports = self.reports.clone();
        let abort = self.abort.clone();
        tokio::task::spawn_blocking(move || {
            let host = Host {
                instance_id: &instance_id,
                root_dir: &config.root_dir,
                install_root: &config.install_root,
                max_revisions: config.max_revisions as usize,
                term_grace: TERM_GRACE,
                abort: &abort,
            };
            work(&host, &source, &reports)
        })
        .await
        .context("the runner thread panicked")?
        .map_err(anyhow::Error::msg)
    }

    /// The first command held, taken out of the held list.
    fn next_held(&self) -> Option<Message> {
        let mut held = self.held.lock().expect("held commands");
        (!held.is_empty()).then(|| held.remove(0))
    }

    /// `receiving`: the long poll of the command queue, kept open while the command runs.
    async fn handle(
        &self,
        message: Message,
        stop: &mut StopSignals,
        receiving: &mut Option<Receive>,
    ) -> Handled {
        let Some(receipt) = message.receipt_handle().map(str::to_owned) else {
            return Handled::Continue;
        };
        let command = match HostMessage::from_json(message.body().unwrap_or_default()) {
            Ok(HostMessage::Command(command)) => *command,
            Ok(HostMessage::Cancel(cancel)) => {
                self.cancel(&receipt, cancel).await;
                return Handled::Continue;
            }
            Err(error) => {
                // Left on the queue: its redrive policy moves it to the dead-letter queue.
                tracing::error!(message_id = message.message_id().unwrap_or_default(), %error, "refusing a malformed command");
                return Handled::Continue;
            }
        };
        // A deployment may come as several commands (load balancer traffic events run
        // between them), so its id alone does not say which one this is.
        let span = tracing::info_span!(
            "command",
            deployment_id = %command.deployment_id,
            instance_id = %self.instance_id,
            events = ?command.lifecycle_events
        );
        self.run_command(receipt, command, stop, receiving)
            .instrument(span)
            .await
    }

    /// Runs a command while keeping it invisible to other receivers, listening for
    /// cancels and answering a stop request; deletes the command once it finished and its
    /// reports were sent.
    ///
    /// Cancels come on the long poll `receiving`, which stays open while the command runs
    /// and is left open for the next command or the idle loop: a cancel reaches the
    /// runner as it arrives, for no request beyond the long poll the agent makes anyway.
    /// A command that ran less than the first tick never opened one (it would compete
    /// with the command's download for the one runtime thread and the endpoint); the
    /// idle loop opens it then, and a cancel waiting there is noted before the next run.
    async fn run_command(
        &self,
        receipt: String,
        command: Command,
        stop: &mut StopSignals,
        receiving: &mut Option<Receive>,
    ) -> Handled {
        // The run, then its reports sent: the ticks keep the command invisible through
        // both, however slow SQS is to take the reports.
        let work = async {
            let outcome = self
                .blocking(move |host, source, reports| runner::run(host, &command, source, reports))
                .await;
            let sent = self.reports.all_sent().await.map_err(anyhow::Error::msg);
            outcome.and_then(|outcome| sent.map(|()| outcome))
        };
        tokio::pin!(work);
        // The first tick turns the short receive visibility into ours, and that of the
        // commands held behind this one: at once if there are any, since quick commands
        // one after another would never tick.
        let first_tick = if self.held.lock().expect("held commands").is_empty() {
            FIRST_KEEP_ALIVE
        } else {
            Duration::ZERO
        };
        let mut keep_alive = tokio::time::interval_at(
            tokio::time::Instant::now() + first_tick,
            Duration::from_secs(VISIBILITY_SECS as u64 / 3),
        );
        // Asked to stop: the deployment has the grace to finish, then its script is
        // stopped (a second signal stops it at once); if the runner still has not
        // returned after that, the agent exits and its next start reports the event.
        let grace = Duration::from_secs(self.config.stop_grace_seconds.into());
        let mut stopping: Option<tokio::time::Instant> = None;
        let mut aborted_at: Option<tokio::time::Instant> = None;
        let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        // A poll left open by the command before, or the idle loop, is read on; a new
        // one opens at the first tick.
        let mut listening = receiving.is_some();
        let result = loop {
            if listening && receiving.is_none() {
                *receiving = Some(self.receive());
            }
            tokio::select! {
                // Biased: the work is polled (and its thread started) before the first
                // tick's request is awaited.
                biased;
                result = &mut work => break result,
                _ = stop.recv(), if aborted_at.is_none() => {
                    if stopping.is_none() {
                        tracing::warn!(grace_seconds = grace.as_secs(), "asked to stop; the running deployment may finish first");
                        stopping = Some(tokio::time::Instant::now() + grace);
                    } else {
                        aborted_at = Some(self.abort_running());
                    }
                }
                _ = tokio::time::sleep_until(stopping.unwrap_or(far)), if stopping.is_some() && aborted_at.is_none() => {
                    aborted_at = Some(self.abort_running());
                }
                _ = tokio::time::sleep_until(aborted_at.map_or(far, |at| at + TERM_GRACE + ABORT_WAIT)), if aborted_at.is_some() => {
                    tracing::error!("the runner did not return after its script was stopped; exiting, and the next start reports the event");
                    std::process::exit(1);
                }
                // Lazy: the block, not the poll, is made when the branch is off.
                received = async { receiving.as_mut().expect("a poll is open while listening").await }, if listening => {
                    *receiving = None;
                    match received {
                        Ok(messages) => self.take_in(messages, true).await,
                        Err(error) => {
                            // Not again at once: the next tick listens again.
                            tracing::warn!(%error, "listening for cancels failed; the next tick listens again");
                            listening = false;
                        }
                    }
                }
                _ = keep_alive.tick() => {
                    self.keep_invisible(&receipt).await;
                    let held: Vec<String> = self.held.lock().expect("held commands")
                        .iter()
                        .filter_map(|message| message.receipt_handle().map(str::to_owned))
                        .collect();
                    for receipt in held {
                        self.keep_invisible(&receipt).await;
                    }
                    listening = true;
                }
            }
        };
        match result {
            Ok(outcome) => {
                tracing::info!(?outcome, "command done");
                // A refused command (for another instance) would only be delivered to
                // this wrong host again.
                self.delete(&receipt).await;
            }
            Err(error) => {
                tracing::error!(%error, "command not finished (interrupted, or its reports not sent); it stays on the queue, and a redelivery re-sends its final reports")
            }
        }
        if stopping.is_some() {
            Handled::Stopping
        } else {
            Handled::Continue
        }
    }

    async fn keep_invisible(&self, receipt: &str) {
        if let Err(error) = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.command_queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(VISIBILITY_SECS)
            .send()
            .await
        {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(error), "extending a command's visibility failed");
        }
    }

    /// A long poll of the command queue (see [`Receive`]).
    fn receive(&self) -> Receive {
        let request = self
            .sqs
            .receive_message()
            .queue_url(&self.command_queue_url)
            .wait_time_seconds(self.config.poll_wait_seconds as i32)
            .max_number_of_messages(10)
            .visibility_timeout(RECEIVE_VISIBILITY_SECS);
        Box::pin(async move {
            request
                .send()
                .await
                .map(|output| output.messages.unwrap_or_default())
                .map_err(|error| aws_sdk_sqs::error::DisplayErrorContext(error).to_string())
        })
    }

    /// Notes the cancels among `messages` at once (then deletes them), and holds the rest,
    /// in order, until their turn. `busy`: a command is running, whose ticks keep the held
    /// ones invisible from its next tick on; until then these are made so at once, as
    /// their receive visibility is shorter than a tick.
    async fn take_in(&self, messages: Vec<Message>, busy: bool) {
        for message in messages {
            let Some(receipt) = message.receipt_handle().map(str::to_owned) else {
                continue;
            };
            match HostMessage::from_json(message.body().unwrap_or_default()) {
                Ok(HostMessage::Cancel(cancel)) => self.cancel(&receipt, cancel).await,
                _ => {
                    if busy {
                        self.keep_invisible(&receipt).await;
                    }
                    self.held.lock().expect("held commands").push(message);
                }
            }
        }
    }

    /// Notes that a deployment ended (see [`runner::cancel`]), then deletes the cancel.
    async fn cancel(&self, receipt: &str, cancel: Cancel) {
        let deployment_id = cancel.deployment_id.clone();
        match self
            .blocking(move |host, _, _| runner::cancel(host, &cancel))
            .await
        {
            Ok(()) => self.delete(receipt).await,
            Err(error) => {
                tracing::error!(%deployment_id, %error, "could not note a cancel; it stays on the queue")
            }
        }
    }

    /// Ends the grace of a stop: the runner stops its script and starts no more events.
    fn abort_running(&self) -> tokio::time::Instant {
        tracing::warn!("stopping the running script: the agent is stopping");
        self.abort.store(true, Ordering::SeqCst);
        tokio::time::Instant::now()
    }

    async fn delete(&self, receipt: &str) {
        if let Err(error) = self
            .sqs
            .delete_message()
            .queue_url(&self.command_queue_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(error), "deleting a finished command failed; a redelivery re-sends its reports");
        }
    }
}

/// Unmaps the pages of code and read-only data the start touched (the SDK's
/// configuration, clap, YAML, the recovery), which idle RSS would otherwise count for
/// ever: `MADV_DONTNEED` on read-only file mappings (the binary's and the libraries')
/// that hold no page of their own (`Anonymous: 0 kB` in smaps, so no relocated page).
/// The pages stay in the page cache, and those the queue loop needs come back on their
/// first use (a minor fault); nothing is lost, since none of them was ever written.
fn release_start_up_code() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut mapping: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [range, perms, _, _, _, path, ..] if range.contains('-') => {
                mapping = None;
                let read_only = perms == "r-xp" || perms == "r--p";
                if read_only
                    && path.starts_with('/')
                    && let Some((start, end)) = range.split_once('-')
                    && let (Ok(start), Ok(end)) = (
                        usize::from_str_radix(start, 16),
                        usize::from_str_radix(end, 16),
                    )
                {
                    mapping = Some((start, end));
                }
            }
            ["Anonymous:", "0", "kB"] => {
                if let Some((start, end)) = mapping.take() {
                    // SAFETY: a private file mapping, read-only, with no page of its
                    // own: its pages are the file's and are read again when next used.
                    let result = unsafe {
                        nix::libc::madvise(
                            start as *mut nix::libc::c_void,
                            end - start,
                            nix::libc::MADV_DONTNEED,
                        )
                    };
                    if result != 0 {
                        tracing::debug!(error = %std::io::Error::last_os_error(), "releasing start-up pages");
                    }
                }
            }
            ["Anonymous:", ..] => mapping = None,
            _ => {}
        }
    }
}

/// The host's command queue, waiting for it to exist: Gantry makes it (and tags it with
/// the instance, which the EC2 host policy needs before the host may see it) when it
/// first sends the host a command, so an instance that boots before its first
/// deployment waits here instead of exiting (and exhausting its service manager's
/// restarts). Other errors end the agent. None when asked to stop while waiting.
async fn command_queue_url(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
) -> anyhow::Result<Option<String>> {
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut wait = Duration::from_secs(1);
    let mut told = false;
    loop {
        let error = match sqs.get_queue_url().queue_name(name).send().await {
            Ok(found) => {
                return found
                    .queue_url
                    .map(Some)
                    .with_context(|| format!("queue {name} has no URL"));
            }
            Err(error) => error,
        };
        let code = error
            .as_service_error()
            .and_then(|e| e.code())
            .unwrap_or("");
        let not_yet = error
            .as_service_error()
            .is_some_and(|e| e.is_queue_does_not_exist())
            || code == "AccessDenied";
        if !not_yet {
            return Err(anyhow::anyhow!(
                "{}",
                aws_sdk_sqs::error::DisplayErrorContext(error)
            ))
            .with_context(|| format!("finding queue {name}"));
        }
        if !told {
            tracing::info!(queue = name, %code, "waiting for the command queue: Gantry makes it with this instance's first deployment");
            told = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = terminate.recv() => return Ok(None),
            _ = interrupt.recv() => return Ok(None),
        }
        wait = (wait * 2).min(Duration::from_secs(20));
    }
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> anyhow::Result<String> {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(error)))
        .with_context(|| format!("finding queue {name}"))?
        .queue_url
        .with_context(|| format!("queue {name} has no URL"))
}

async fn ec2_instance_id(endpoint: &str) -> anyhow::Result<String> {
    let client = aws_config::imds::Client::builder()
        .endpoint(endpoint)
        .map_err(|error| anyhow::anyhow!("identity.ec2.metadata_endpoint: {error}"))?
        .build();
    let id = client
        .get("/latest/meta-data/instance-id")
        .await
        .with_context(|| format!("reading the instance id from {endpoint} (IMDSv2)"))?;
    Ok(id.as_ref().to_owned())
}
