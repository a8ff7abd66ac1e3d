//! Keyset (cursor) pagination: `?limit=` (default 20, max 100) and an opaque `cursor`.
//!
//! The cursor is the sort key of the last row a client saw, serialized and base64url-encoded.
//! Queries fetch `limit + 1` rows with `WHERE (key) > (cursor)`; the extra row only tells whether
//! another page exists. Unlike OFFSET, the cost of a page does not grow with its depth, and rows
//! inserted meanwhile never shift a page.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::ApiError;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// Query parameters of every list endpoint.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page; omit for the first page.
    pub cursor: Option<String>,
}

/// A validated page request carrying the decoded sort key of the previous page's last row.
#[derive(Debug, Clone)]
pub struct PageRequest<K> {
    pub limit: u32,
    pub after: Option<K>,
}

impl<K> PageRequest<K> {
    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

impl PageQuery {
    pub fn resolve<K: DeserializeOwned>(&self) -> Result<PageRequest<K>, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::field(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}, got {limit}"),
            ));
        }
        let after = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ApiError::field("cursor", "is not a cursor returned by this endpoint")
            })?),
        };
        Ok(PageRequest { limit, after })
    }
}

pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

fn decode_cursor<K: DeserializeOwned>(cursor: &str) -> Option<K> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// One page of results.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in key order.
    pub fn from_rows<K: Serialize>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> K) -> Self {
        let limit = limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| encode_cursor(&key(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let p: PageRequest<i64> = PageQuery::default().resolve().expect("defaults");
        assert_eq!((p.limit, p.after), (DEFAULT_LIMIT, None));
        for bad in [0, 101] {
            let err = PageQuery {
                limit: Some(bad),
                cursor: None,
            }
            .resolve::<i64>()
            .expect_err("out of range");
            assert_eq!(err.errors[0].field, "limit");
        }
        let err = PageQuery {
            limit: None,
            cursor: Some("%%%".into()),
        }
        .resolve::<i64>()
        .expect_err("garbage cursor");
        assert_eq!(err.errors[0].field, "cursor");
    }

    #[test]
    fn cursor_round_trips_through_a_page() {
        let rows: Vec<i64> = (1..=6).collect();
        let page = Page::from_rows(rows, 5, |r| *r);
        assert_eq!(page.items, [1, 2, 3, 4, 5]);
        let cursor = page.next_cursor.expect("a sixth row exists");
        let next: PageRequest<i64> = PageQuery {
            limit: Some(5),
            cursor: Some(cursor),
        }
        .resolve()
        .expect("own cursor");
        assert_eq!(next.after, Some(5));
        let last = Page::from_rows(vec![6_i64], 5, |r| *r);
        assert!(last.next_cursor.is_none());
    }
}
