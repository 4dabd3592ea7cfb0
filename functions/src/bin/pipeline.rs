//! The `pipeline` Lambda function (CodePipeline's "Invoke AWS Lambda" action): wiring only
//! (see [`gantry_functions::lambda::run`]).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    gantry_functions::lambda::run("pipeline").await
}
