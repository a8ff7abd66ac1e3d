//! SQL of the learning service. Every statement is schema-qualified; the pool's `search_path` is
//! `learning` as well. The schema and why each index exists: migrations/learning and
//! docs/learning.md.
//!
//! - [`import`]: the importer's staging tables, set-based upserts and link resolution;
//! - [`read`]: the API's reads and its one write (the profile patch).

pub mod import;
pub mod read;
