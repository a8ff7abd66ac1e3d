//! The production binary of call control. It starts and answers even when PostgreSQL is down
//! (from the file snapshot); `calls migrate` applies migrations and exits. Everything else is
//! the kit's: see `kit::app::run_single_with`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kit::app::main(&calls::SERVICE, kit_aws::rotating_database_from_env).await
}
