//! The production binary of call control. It starts and answers even when PostgreSQL is down
//! (from the file snapshot); `calls migrate` applies migrations and exits.

use std::sync::Arc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings = match calls::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("calls: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let run = kit::app::run_single_with(
        &calls::SERVICE,
        kit_aws::database_from_env,
        |pool| async move {
            let c = calls::start(pool, settings, Arc::new(calls::SystemClock)).await;
            kit::app::ServiceParts {
                router: c.router,
                readiness: c.readiness,
            }
        },
    );
    match run.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("calls: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
