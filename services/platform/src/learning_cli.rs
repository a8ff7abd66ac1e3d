//! `meridian learning ...`: the learning service's offline tools, the importer and the seeded
//! generator (docs/learning.md).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use kit::config::CommonConfig;

#[derive(Subcommand)]
pub enum LearningCommand {
    /// Import the JSON sources of a directory (*_course.json, *_exams.json, *_practices.json,
    /// user_data.json) into DATABASE_URL's schema `learning` (migrated first), idempotently;
    /// print the migration report. Exit 1 when a file fails (nothing of that file is kept).
    Import {
        /// Directory holding the input files (services/learning/data has the real ones).
        #[arg(long)]
        dir: PathBuf,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Refuse input files larger than this many bytes.
        #[arg(long, default_value_t = learning::settings::ImportLimits::default().max_file_bytes)]
        max_file_bytes: u64,
        /// Refuse a single record (an attempt, a practice bank) larger than this many bytes.
        #[arg(long, default_value_t = learning::settings::ImportLimits::default().max_record_bytes)]
        max_record_bytes: u64,
        /// Rows per COPY chunk.
        #[arg(long, default_value_t = learning::settings::ImportLimits::default().batch_rows)]
        batch_rows: usize,
        /// Progress display: auto (a bar on a terminal, lines otherwise), bar, lines or quiet.
        #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
        progress: ProgressArg,
    },
    /// Write the four input files at N times the real data's size, deterministic from the seed,
    /// in the real shapes (practices following aqaGCSEBio_practices_schema.json).
    Generate {
        /// Scale: 1 is about the real files' size (plus a practices file), 100 is ≥ 1M rows.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        scale: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Bar,
    Lines,
    Quiet,
}

pub async fn run(cfg: &CommonConfig, command: LearningCommand) -> anyhow::Result<()> {
    match command {
        LearningCommand::Import {
            dir,
            report: report_file,
            max_file_bytes,
            max_record_bytes,
            batch_rows,
            progress,
        } => {
            let limits = learning::settings::ImportLimits {
                max_file_bytes,
                max_record_bytes,
                batch_rows,
                ..learning::settings::ImportLimits::default()
            };
            if let Err((name, value, reason)) = limits.validate() {
                // A bad flag is a usage error, like clap's own (exit 2).
                eprintln!("error: invalid import limit ({name}={value}): {reason}");
                std::process::exit(2);
            }
            let options = super::configured_database(cfg)
                .await?
                .context("DATABASE_URL or DATABASE_SECRET_ARN must be set for learning import")?;
            // The importer holds one connection per file (one transaction), plus the report's.
            let settings = kit::db::PoolSettings {
                max_connections: 2,
                ..kit::db::PoolSettings::default()
            };
            let pool = kit::db::pool_with(options, learning::SERVICE.schema, &settings);
            kit::db::migrate(&pool, learning::SERVICE.schema, learning::SERVICE.migrator)
                .await
                .context("migrating learning")?;
            let opts = learning::import::Options {
                limits,
                progress: match progress {
                    ProgressArg::Auto => learning::import::Progress::Auto,
                    ProgressArg::Bar => learning::import::Progress::Bar,
                    ProgressArg::Lines => learning::import::Progress::Lines,
                    ProgressArg::Quiet => learning::import::Progress::Quiet,
                },
                run_at: None,
            };
            let result = learning::import::run(&pool, &dir, &opts).await;
            pool.close().await;
            let report = result.context("learning import failed")?;
            print!("{}", report.render());
            if let Some(path) = &report_file {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing the report to {}", path.display()))?;
            }
            Ok(())
        }
        LearningCommand::Generate { scale, seed, out } => {
            let summary = learning::generate::write_all(&out, scale, seed)
                .with_context(|| format!("generating into {}", out.display()))?;
            println!("{summary}");
            Ok(())
        }
    }
}
