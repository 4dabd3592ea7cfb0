//! Lambda's limits, as template.yaml gives them to each function, applied to the
//! invocations gantry-local runs.
//!
//! template.yaml is the one source of the numbers: it is compiled in, and each
//! function's `Timeout`, `MemorySize` and `EphemeralStorage` are read from its resource,
//! or from `Globals` where the resource gives none. An invocation past its timeout is
//! cut off where it is (its future dropped, as Lambda stops the sandbox) and answered
//! as Lambda answers. Memory and storage cannot be fenced per invocation inside one
//! process: they are read and reported beside the process's peak memory, for the
//! benchmarks to compare.

use gantry_functions::control::{ControlPlane, Settings};
use gantry_functions::error::ApiError;
use gantry_functions::handlers;
use serde_json::{Value, json};
use serde_norway::Value as Yaml;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The template gantry-local was built with.
pub const TEMPLATE: &str = include_str!("../../template.yaml");

/// Lambda's limit on a synchronous invocation's request and response payloads.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// What the template gives one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionLimits {
    pub timeout: Duration,
    pub memory_mb: u64,
    pub ephemeral_storage_mb: u64,
}

/// What gantry-local takes from the template: each function's limits, by the name the
/// handlers table uses (its binary), and each queue's visibility timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub functions: BTreeMap<String, FunctionLimits>,
    /// Visibility timeouts in seconds, by queue resource name (`ReportsQueue`).
    pub visibility_timeouts: BTreeMap<String, u64>,
}

/// Lambda's default ephemeral storage (`/tmp`), when a function sets none.
const DEFAULT_EPHEMERAL_STORAGE_MB: u64 = 512;
/// SQS's default visibility timeout, when a queue sets none.
const DEFAULT_VISIBILITY_TIMEOUT: u64 = 30;

impl Template {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let document: Yaml = serde_norway::from_str(text)?;
        let globals = &document["Globals"]["Function"];
        let number = |value: &Yaml, what: &str| -> anyhow::Result<Option<u64>> {
            match value {
                Yaml::Null => Ok(None),
                Yaml::Number(number) => number
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| anyhow::anyhow!("{what}: {number} is not a whole number")),
                other => anyhow::bail!("{what}: expected a number, found {other:?}"),
            }
        };
        let resources = document["Resources"]
            .as_mapping()
            .ok_or_else(|| anyhow::anyhow!("template.yaml has no Resources"))?;
        let mut functions = BTreeMap::new();
        let mut visibility_timeouts = BTreeMap::new();
        for (name, resource) in resources {
            let name = name.as_str().unwrap_or_default();
            let properties = &resource["Properties"];
            match resource["Type"].as_str() {
                Some("AWS::Serverless::Function") => {
                    let binary = resource["Metadata"]["BuildProperties"]["Binary"]
                        .as_str()
                        .ok_or_else(|| anyhow::anyhow!("{name}: no BuildProperties.Binary"))?;
                    let setting = |key: &str| -> anyhow::Result<Option<u64>> {
                        let own = number(&properties[key], &format!("{name}.{key}"))?;
                        Ok(own.or(number(&globals[key], &format!("Globals.Function.{key}"))?))
                    };
                    let timeout =
                        setting("Timeout")?.ok_or_else(|| anyhow::anyhow!("{name}: no Timeout"))?;
                    let memory_mb = setting("MemorySize")?
                        .ok_or_else(|| anyhow::anyhow!("{name}: no MemorySize"))?;
                    let ephemeral_storage_mb = number(
                        &properties["EphemeralStorage"]["Size"],
                        &format!("{name}.EphemeralStorage.Size"),
                    )?
                    .unwrap_or(DEFAULT_EPHEMERAL_STORAGE_MB);
                    functions.insert(
                        binary.to_owned(),
                        FunctionLimits {
                            timeout: Duration::from_secs(timeout),
                            memory_mb,
                            ephemeral_storage_mb,
                        },
                    );
                }
                Some("AWS::SQS::Queue") => {
                    let visibility = number(
                        &properties["VisibilityTimeout"],
                        &format!("{name}.VisibilityTimeout"),
                    )?
                    .unwrap_or(DEFAULT_VISIBILITY_TIMEOUT);
                    visibility_timeouts.insert(name.to_owned(), visibility);
                }
                _ => {}
            }
        }
        Ok(Self {
            functions,
            visibility_timeouts,
        })
    }

    /// The queue's visibility timeout, in seconds.
    pub fn visibility_timeout(&self, queue_resource: &str) -> anyhow::Result<u64> {
        self.visibility_timeouts
            .get(queue_resource)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("template.yaml has no queue {queue_resource}"))
    }
}

/// How one invocation ended.
#[derive(Debug)]
pub enum Outcome {
    Returned(Value),
    Failed(ApiError),
    /// Cut off at the function's timeout.
    TimedOut(Duration),
}

impl Outcome {
    /// The error Lambda answers a timed-out invocation with.
    pub fn timed_out_error(timeout: Duration) -> Value {
        json!({
            "errorType": "Sandbox.Timedout",
            "errorMessage": format!("Task timed out after {:.2} seconds", timeout.as_secs_f64()),
        })
    }
}

/// Runs `invocation` under `limit`: its result, or `TimedOut` when it runs past it
/// (then the future is dropped where it is).
pub async fn within<F>(limit: Option<Duration>, invocation: F) -> Outcome
where
    F: Future<Output = Result<Value, ApiError>>,
{
    let result = match limit {
        Some(limit) => match tokio::time::timeout(limit, invocation).await {
            Ok(result) => result,
            Err(_) => return Outcome::TimedOut(limit),
        },
        None => invocation.await,
    };
    match result {
        Ok(value) => Outcome::Returned(value),
        Err(error) => Outcome::Failed(error),
    }
}

/// One function's invocations so far.
#[derive(Debug, Default)]
struct Record {
    durations_ms: Vec<f64>,
    failed: usize,
    timeouts: usize,
}

/// Invokes the handlers as Lambda would: each with its own clients and settings (as
/// each function is a process of its own there), under its template limits, each
/// invocation's time recorded.
pub struct Functions {
    controls: BTreeMap<&'static str, ControlPlane>,
    pub template: Template,
    /// Off only for debugging (`--no-timeouts`): a handler then runs as long as it takes.
    pub enforce_timeouts: bool,
    records: Mutex<BTreeMap<String, Record>>,
}

impl Functions {
    pub fn new(
        config: &aws_config::SdkConfig,
        settings: &Settings,
        template: Template,
        enforce_timeouts: bool,
    ) -> anyhow::Result<Self> {
        let mut controls = BTreeMap::new();
        for function in handlers::FUNCTIONS {
            anyhow::ensure!(
                template.functions.contains_key(function),
                "template.yaml has no function with Binary {function}"
            );
            let mut settings = settings.clone();
            settings.fleet_effects_here = handlers::carries_fleet_effects(function);
            controls.insert(function, ControlPlane::new(config, settings));
        }
        Ok(Self {
            controls,
            template,
            enforce_timeouts,
            records: Mutex::new(BTreeMap::new()),
        })
    }

    /// The clients and settings `function` runs with.
    pub fn control(&self, function: &str) -> Option<&ControlPlane> {
        self.controls.get(function)
    }

    pub fn limits(&self, function: &str) -> Option<FunctionLimits> {
        self.template.functions.get(function).copied()
    }

    /// One invocation of `function`.
    pub async fn invoke(&self, function: &str, payload: Value) -> Outcome {
        let limit = self
            .limits(function)
            .map(|limits| limits.timeout)
            .filter(|_| self.enforce_timeouts);
        let started = Instant::now();
        // Boxed: a handler's future is large (CreateDeployment's nests a rollback's), and
        // built inline it would sit on a worker thread's stack.
        // A function that does not exist is refused by `invoke`, with any function's
        // clients.
        let control = self
            .control(function)
            .or_else(|| self.controls.values().next())
            .expect("Functions::new made a control plane for each function");
        let invocation = Box::pin(handlers::invoke(control, function, payload));
        let outcome = within(limit, invocation).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        {
            let mut records = self.records.lock().expect("not poisoned");
            let record = records.entry(function.to_owned()).or_default();
            record.durations_ms.push(elapsed_ms);
            match &outcome {
                Outcome::Returned(_) => {}
                Outcome::Failed(_) => record.failed += 1,
                Outcome::TimedOut(_) => record.timeouts += 1,
            }
        }
        match &outcome {
            Outcome::TimedOut(limit) => tracing::error!(
                %function,
                elapsed_ms = elapsed_ms as u64,
                timeout_s = limit.as_secs(),
                "invocation timed out: cut off as Lambda would"
            ),
            _ => tracing::debug!(%function, elapsed_ms = elapsed_ms as u64, "invoked"),
        }
        outcome
    }

    /// Per function: invocations, failures, timeouts, p50, p99 and max in milliseconds,
    /// against its timeout; and the process's peak resident memory.
    pub fn summary(&self) -> Value {
        let records = self.records.lock().expect("not poisoned");
        let functions: serde_json::Map<String, Value> = records
            .iter()
            .map(|(function, record)| {
                let mut sorted = record.durations_ms.clone();
                sorted.sort_by(f64::total_cmp);
                let limits = self.limits(function);
                (
                    function.clone(),
                    json!({
                        "count": sorted.len(),
                        "failed": record.failed,
                        "timeouts": record.timeouts,
                        "p50Ms": percentile(&sorted, 0.50),
                        "p99Ms": percentile(&sorted, 0.99),
                        "maxMs": sorted.last().copied().unwrap_or(0.0),
                        "timeoutMs": limits.map(|limits| limits.timeout.as_millis() as u64),
                        "memoryMb": limits.map(|limits| limits.memory_mb),
                        "ephemeralStorageMb": limits.map(|limits| limits.ephemeral_storage_mb),
                    }),
                )
            })
            .collect();
        json!({
            "functions": functions,
            "processPeakRssMb": peak_rss_mb(),
            "timeoutsEnforced": self.enforce_timeouts,
        })
    }
}

/// The nearest-rank percentile of sorted values (0 when there are none).
fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The process's peak resident set (VmHWM), in MiB, where /proc tells it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_gets_the_templates_limits() {
        let template = Template::parse(TEMPLATE).expect("template.yaml parses");
        for function in handlers::FUNCTIONS {
            let limits = template.functions[function];
            assert!(limits.timeout >= Duration::from_secs(1), "{function}");
            assert!(limits.memory_mb >= 128, "{function}");
        }
        assert_eq!(template.visibility_timeout("ReportsQueue").unwrap(), 180);
    }

    #[test]
    fn a_functions_own_settings_win_over_globals() {
        let text = r#"
Globals:
  Function:
    Timeout: 30
    MemorySize: 256
Resources:
  Slow:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: slow}}
    Properties:
      Timeout: 900
      EphemeralStorage: {Size: 10240}
      CodeUri: !Ref Somewhere
  Plain:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: plain}}
    Properties: {MemorySize: 1024}
  Queue:
    Type: AWS::SQS::Queue
    Properties: {}
"#;
        let template = Template::parse(text).unwrap();
        assert_eq!(
            template.functions["slow"],
            FunctionLimits {
                timeout: Duration::from_secs(900),
                memory_mb: 256,
                ephemeral_storage_mb: 10240,
            }
        );
        assert_eq!(
            template.functions["plain"],
            FunctionLimits {
                timeout: Duration::from_secs(30),
                memory_mb: 1024,
                ephemeral_storage_mb: 512,
            }
        );
        assert_eq!(template.visibility_timeout("Queue").unwrap(), 30);
        assert!(Template::parse("Resources: {F: {Type: AWS::Serverless::Function}}").is_err());
    }

    #[tokio::test]
    async fn an_invocation_past_its_timeout_is_cut_off_where_it_is() {
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct SetOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let guard = SetOnDrop(dropped.clone());
        let outcome = within(Some(Duration::from_millis(50)), async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(json!({}))
        })
        .await;
        assert!(matches!(outcome, Outcome::TimedOut(limit) if limit == Duration::from_millis(50)));
        assert!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            "the invocation's future was dropped"
        );
        assert_eq!(
            Outcome::timed_out_error(Duration::from_secs(30))["errorMessage"],
            "Task timed out after 30.00 seconds"
        );
        let outcome = within(Some(Duration::from_secs(5)), async { Ok(json!({"ok": 1})) }).await;
        assert!(matches!(outcome, Outcome::Returned(value) if value["ok"] == 1));
        let outcome = within(None, async { Err(ApiError::internal("boom")) }).await;
        assert!(matches!(outcome, Outcome::Failed(_)));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 50.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
