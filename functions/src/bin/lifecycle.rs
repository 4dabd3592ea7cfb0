//! The `lifecycle` Lambda function: wiring only (see [`gantry_functions::lambda::run`]).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    gantry_functions::lambda::run("lifecycle").await
}
