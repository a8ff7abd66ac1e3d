//! `meridian playlists ...`: the playlists service's offline tools (docs/playlists.md).

use anyhow::Context;
use clap::Subcommand;
use kit::config::CommonConfig;

#[derive(Subcommand)]
pub enum PlaylistsCommand {
    /// Truncate every read model (playlist views, practice sessions, share links, analytics
    /// counters) of DATABASE_URL's schema `playlists` (migrated first) and replay
    /// playlists.events into them, in one transaction; commands wait meanwhile. Prints a JSON
    /// report (events, playlists, sessions, shares, cohort users, milliseconds).
    Rebuild,
}

pub async fn run(cfg: &CommonConfig, command: PlaylistsCommand) -> anyhow::Result<()> {
    match command {
        PlaylistsCommand::Rebuild => {
            let options = super::configured_database(cfg)
                .await?
                .context("DATABASE_URL or DATABASE_SECRET_ARN must be set for playlists rebuild")?;
            // The rebuild streams the log on one connection while it writes on another.
            let settings = kit::db::PoolSettings {
                max_connections: 2,
                ..kit::db::PoolSettings::default()
            };
            let pool = kit::db::pool_with(options, playlists::SERVICE.schema, &settings);
            kit::db::migrate(
                &pool,
                playlists::SERVICE.schema,
                playlists::SERVICE.migrator,
            )
            .await
            .context("migrating playlists")?;
            let result = playlists::rebuild::rebuild(&pool).await;
            pool.close().await;
            let report = result.context("playlists rebuild failed")?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}
