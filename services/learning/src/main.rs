//! The production binary of the learning service (`learning migrate`: apply migrations and exit,
//! the Release's migration Job). Everything else is the kit's: see `kit::app::run_single_with`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kit::app::main(&learning::SERVICE, kit_aws::rotating_database_from_env).await
}
