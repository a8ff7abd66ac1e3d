//! Extractors that answer bad input with problem+json naming the offending field.
//!
//! axum's own `Json`, `Path` and `Query` reject with plain-text bodies; these wrappers keep the
//! same ergonomics (`Json(body): Json<T>`) and document themselves in OpenAPI exactly like the
//! axum types they replace.

use aide::{
    OperationInput, OperationOutput,
    generate::GenContext,
    openapi::{Operation, Response as DocResponse, StatusCode as DocStatus},
};
use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{ApiError, FieldError};

/// JSON request body or response. Request bodies must be `application/json`; decoding errors
/// name the JSON path of the bad field. Use `#[serde(deny_unknown_fields)]` on request types so
/// typos are rejected rather than silently ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::unsupported_media_type(
                "expected a request body with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "payload-too-large", "Payload too large")
                    .with_detail(rejection.body_text())
            } else {
                ApiError::bad_request(rejection.body_text())
            }
        })?;
        decode_json(&bytes).map(Json)
    }
}

/// Decodes a JSON document, turning serde's error into a field-naming validation problem.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::field(
            "body",
            "the request body is empty; expected a JSON document",
        ));
    }
    let fast = match serde_json::from_slice(bytes) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    // Only a failed body is parsed again with path tracking, to name the field: the tracking
    // wrapper costs on every request, and bad bodies are rare.
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        // The document parses but has something after it.
        Ok(_) => Err(ApiError::field(
            "body",
            bounded(format!("malformed JSON: {fast}"), MAX_ECHO),
        )),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::field(
                    "body",
                    bounded(format!("malformed JSON: {inner}"), MAX_ECHO),
                ));
            }
            let message = strip_position(&inner.to_string());
            // serde quotes the client's own unknown variants, field names and map keys: a
            // megabyte of them must not come back (or reach a log) whole.
            Err(ApiError::validation(vec![FieldError::new(
                bounded(field_name(&path, &message), MAX_ECHO),
                bounded(message, MAX_ECHO),
            )]))
        }
    }
}

/// Longest field name or message an error echoes from client input.
const MAX_ECHO: usize = 200;

/// `s` cut to `max` characters (an ellipsis marks the cut).
fn bounded(s: String, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// serde reports a missing or unknown field at the *parent* path; name the field itself.
fn field_name(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match (named, path) {
        // serde_path_to_error already ends the path with an unknown field's name.
        (Some(name), p) if p == name || p.ends_with(&format!(".{name}")) => p.to_owned(),
        (Some(name), "." | "") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "." | "") => "body".to_owned(),
        (None, p) => p.to_owned(),
    }
}

/// Drops serde_json's " at line 1 column 17" suffix: the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<T: JsonSchema> OperationInput for Json<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::Json::<T>::operation_input(ctx, operation);
    }
}

impl<T: JsonSchema> OperationOutput for Json<T> {
    type Inner = T;
    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        axum::Json::<T>::operation_response(ctx, op)
    }
    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        axum::Json::<T>::inferred_responses(ctx, op)
    }
}

/// `201 Created` with a JSON body.
#[derive(Debug)]
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, axum::Json(self.0)).into_response()
    }
}

impl<T: JsonSchema> OperationOutput for Created<T> {
    type Inner = T;
    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        axum::Json::<T>::operation_response(ctx, op)
    }
    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(Some(DocStatus::Code(201)), r)])
            .unwrap_or_default()
    }
}

/// `204 No Content`.
#[derive(Debug, Clone, Copy)]
pub struct NoContent;

impl IntoResponse for NoContent {
    fn into_response(self) -> Response {
        StatusCode::NO_CONTENT.into_response()
    }
}

impl OperationOutput for NoContent {
    type Inner = ();
    fn operation_response(_ctx: &mut GenContext, _op: &mut Operation) -> Option<DocResponse> {
        Some(DocResponse {
            description: "No content".into(),
            ..Default::default()
        })
    }
    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(Some(DocStatus::Code(204)), r)])
            .unwrap_or_default()
    }
}

/// Path parameters; a parameter that does not parse is named in the problem.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(axum::extract::rejection::PathRejection::FailedToDeserializePathParams(e)) => {
                let err = match e.into_kind() {
                    ErrorKind::ParseErrorAtKey {
                        key,
                        value,
                        expected_type,
                    } => FieldError::new(
                        key,
                        format!("`{value}` is not a valid {}", friendly_type(expected_type)),
                    ),
                    ErrorKind::ParseErrorAtIndex {
                        index,
                        value,
                        expected_type,
                    } => FieldError::new(
                        format!("path[{index}]"),
                        format!("`{value}` is not a valid {}", friendly_type(expected_type)),
                    ),
                    ErrorKind::ParseError {
                        value,
                        expected_type,
                    } => FieldError::new(
                        "path",
                        format!("`{value}` is not a valid {}", friendly_type(expected_type)),
                    ),
                    ErrorKind::DeserializeError {
                        key,
                        value,
                        message,
                    } => FieldError::new(key, format!("`{value}` is not valid: {message}")),
                    ErrorKind::InvalidUtf8InPathParam { key } => {
                        FieldError::new(key, "is not valid UTF-8")
                    }
                    ErrorKind::Message(msg) => FieldError::new("path", msg),
                    other => FieldError::new("path", other.to_string()),
                };
                Err(ApiError::validation(vec![err]))
            }
            Err(other) => Err(ApiError::internal(&other)),
        }
    }
}

fn friendly_type(rust_type: &str) -> &str {
    if rust_type.ends_with("Uuid") {
        "UUID"
    } else {
        rust_type.rsplit("::").next().unwrap_or(rust_type)
    }
}

impl<T: JsonSchema> OperationInput for Path<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::extract::Path::<T>::operation_input(ctx, operation);
    }
}

/// Query string parameters, decoded with the offending key named on error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|err| {
                let path = err.path().to_string();
                let message = err.into_inner().to_string();
                ApiError::validation(vec![FieldError::new(field_name(&path, &message), message)])
            })
    }
}

impl<T: JsonSchema> OperationInput for Query<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::extract::Query::<T>::operation_input(ctx, operation);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_never_echo_unbounded_client_input() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        enum Kind {
            A,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct B {
            kind: Kind,
        }
        let huge = "x".repeat(100_000);
        let body = format!(r#"{{"kind":"{huge}"}}"#);
        let err = super::decode_json::<B>(body.as_bytes()).expect_err("unknown variant");
        assert_eq!(err.errors[0].field, "kind");
        assert!(
            err.errors[0].message.chars().count() <= 201,
            "{}",
            err.errors[0].message.len()
        );
        let detail = err.detail.unwrap_or_default();
        assert!(detail.len() < 1_000, "{}", detail.len());
    }

    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u8,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        flag: bool,
    }

    fn field_of(json: &str) -> String {
        let err = decode_json::<Body>(json.as_bytes()).expect_err("must be rejected");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        err.errors[0].field.clone()
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(field_of(r#"{"name": "a"}"#), "count");
        assert_eq!(field_of(r#"{"name": "a", "count": 300}"#), "count");
        assert_eq!(field_of(r#"{"name": 1, "count": 3}"#), "name");
        assert_eq!(
            field_of(r#"{"name": "a", "count": 3, "extra": 1}"#),
            "extra"
        );
        assert_eq!(
            field_of(r#"{"name": "a", "count": 3, "inner": {"flag": 2}}"#),
            "inner.flag"
        );
        assert_eq!(
            field_of(r#"{"name": "a", "count": 3, "inner": {}}"#),
            "inner.flag"
        );
        assert_eq!(field_of(r#"{"name": "#), "body");
        assert_eq!(field_of(""), "body");
        // A whole document followed by more: rejected, though the first part alone parses.
        assert_eq!(field_of(r#"{"name": "a", "count": 3} {"#), "body");
        assert_eq!(field_of(r#"{"name": "a", "count": 3}x"#), "body");
    }

    #[test]
    fn accepts_valid_json() {
        let b: Body = decode_json(br#"{"name":"a","count":3}"#).expect("valid");
        assert_eq!(b.count, 3);
    }
}

/// The optional `Idempotency-Key` request header (IETF draft), for retried writes.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(IDEMPOTENCY_KEY) {
            None => Ok(Self(None)),
            Some(v) => {
                let key = v.to_str().map_err(|_| {
                    ApiError::field("Idempotency-Key", "must be visible ASCII characters")
                })?;
                if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ApiError::field(
                        "Idempotency-Key",
                        "must be 1..=255 visible ASCII characters",
                    ));
                }
                Ok(Self(Some(key.to_owned())))
            }
        }
    }
}

impl OperationInput for IdempotencyKey {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        use aide::openapi::{
            HeaderStyle, Parameter, ParameterData, ParameterSchemaOrContent, SchemaObject,
        };
        let schema = ctx.schema.subschema_for::<String>();
        aide::operation::add_parameters(
            ctx,
            operation,
            [Parameter::Header {
                parameter_data: ParameterData {
                    name: "Idempotency-Key".into(),
                    description: Some(
                        "Makes a retried request return the original result instead of acting twice."
                            .into(),
                    ),
                    required: false,
                    format: ParameterSchemaOrContent::Schema(SchemaObject {
                        json_schema: schema,
                        example: None,
                        external_docs: None,
                    }),
                    extensions: Default::default(),
                    deprecated: None,
                    example: None,
                    examples: Default::default(),
                    explode: None,
                },
                style: HeaderStyle::Simple,
            }],
        );
    }
}
