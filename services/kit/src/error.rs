//! One error type for every handler, rendered as RFC 9457 `application/problem+json`.
//!
//! Handlers return [`ApiResult<T>`]; anything that is not a client mistake is logged here with its
//! cause and answered with a generic 500, so internals never leak into responses.

use aide::{
    OperationOutput,
    generate::GenContext,
    openapi::{
        MediaType, Operation, Response as DocResponse, SchemaObject, StatusCode as DocStatus,
    },
};
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

pub type ApiResult<T> = Result<T, ApiError>;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input, named by its JSON path (`device_id`, `items[2].name`), query or path key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// RFC 9457 problem details, as sent on the wire.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Problem {
    /// URI reference that identifies the problem type.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Present on validation problems: every offending field with what is wrong with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Problem-specific members (for example the active sessions when a stream limit is hit).
    #[serde(flatten)]
    #[schemars(skip)]
    pub extensions: Map<String, Value>,
}

/// The error every handler returns.
#[derive(Debug, thiserror::Error)]
#[error("{status} {title}: {detail:?}")]
pub struct ApiError {
    pub status: StatusCode,
    /// Short slug for the `type` URI (`validation`, `not-found`, ...).
    pub kind: &'static str,
    pub title: String,
    pub detail: Option<String>,
    pub errors: Vec<FieldError>,
    pub extensions: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, title: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            title: title.into(),
            detail: None,
            errors: Vec::new(),
            extensions: Map::new(),
        }
    }

    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a problem-specific member to the body.
    #[must_use]
    pub fn with_extension(mut self, key: &str, value: impl Serialize) -> Self {
        // Serializing our own response types cannot fail; fall back to null rather than panic.
        self.extensions.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    /// 422-style validation failure, answered as 400 with every offending field listed.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            errors,
            ..Self::new(StatusCode::BAD_REQUEST, "validation", "Invalid request")
                .with_detail(detail)
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").with_detail(detail)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").with_detail(what)
    }

    pub fn gone(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "gone", "Gone").with_detail(detail)
    }

    pub fn conflict(kind: &'static str, title: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, kind, title)
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
        )
        .with_detail(detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .with_detail(detail)
    }

    /// A server-side failure. The cause is logged; the client sees a generic message.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("https://meridian.dev/problems/{}", self.kind),
            title: self.title.clone(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
            extensions: self.extensions.clone(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        // A refused password wakes the credential rotation (kit-aws) before the client retries.
        crate::db::note_error(&err);
        if is_unavailable(&err) {
            // Tell clients to retry, not that we broke: the database is down, restarting,
            // failing over, or the pool is exhausted.
            tracing::warn!(error = %err, "database unavailable");
            return Self::unavailable("the database is temporarily unavailable; retry shortly");
        }
        Self::internal(&err)
    }
}

/// Errors that mean "the database cannot serve right now" rather than "this request is wrong".
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exceptions; 57P01-57P03: admin shutdown, crash shutdown, cannot
            // connect now (restart); 25006: read-only transaction (writer failed over to a
            // reader); 53300: too many connections; 28P01: password refused (rotated: the pool
            // re-reads the secret and the retry connects with the new one).
            code.starts_with("08")
                || matches!(
                    &*code,
                    "57P01" | "57P02" | "57P03" | "25006" | "53300" | "28P01"
                )
        }),
        _ => false,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

/// Documents every error response as problem+json in the OpenAPI document.
impl OperationOutput for ApiError {
    type Inner = Problem;

    fn operation_response(ctx: &mut GenContext, _op: &mut Operation) -> Option<DocResponse> {
        let schema = ctx.schema.subschema_for::<Problem>();
        Some(DocResponse {
            description: "RFC 9457 problem details".into(),
            content: [(
                PROBLEM_JSON.to_owned(),
                MediaType {
                    schema: Some(SchemaObject {
                        json_schema: schema,
                        example: None,
                        external_docs: None,
                    }),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        })
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(None, r)])
            .unwrap_or_default()
    }
}

/// A 404 problem for paths no service routes.
pub async fn not_found_fallback() -> ApiError {
    ApiError::not_found("no route matches this path")
}

/// A 405 problem instead of axum's empty-bodied default.
pub async fn method_not_allowed_fallback() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
}
