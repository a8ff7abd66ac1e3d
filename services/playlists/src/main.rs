//! The production binary of the playlists service (`playlists migrate`: apply migrations and
//! exit, the Release's migration Job). Everything else is the kit's: see `kit::app::main`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kit::app::main(&playlists::SERVICE, kit_aws::database_from_env).await
}
