//! The production binary of the streams service: configuration from the environment, then
//! `kit::app::run_single_with` (DATABASE_URL, else DATABASE_SECRET_ARN via kit-aws).
//! `streams migrate` applies migrations and exits (the Release's migration Job).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings = match streams::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("streams: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let run = kit::app::run_single_with(
        &streams::SERVICE,
        kit_aws::database_from_env,
        |pool| async move {
            kit::app::ServiceParts {
                readiness: vec![kit::health::DbReady::for_service(
                    &streams::SERVICE,
                    pool.clone(),
                )],
                router: streams::start(pool, settings),
            }
        },
    );
    match run.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streams: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
