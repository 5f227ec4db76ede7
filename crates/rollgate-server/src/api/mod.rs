//! The HTTP surface: routes, the one error type, and the extractors that check who is calling.

pub(crate) mod advisories;
mod agent;
mod campaign_months;
mod campaigns;
mod feeds;
mod manage;
mod tuf;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rollgate_core::member::MemberError;
use rollgate_store::StoreError;
use rollgate_wire::{ErrorBody, ErrorDetail};

use crate::tls::PeerIdentity;
use crate::AppState;

/// Builds the whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/enroll", post(agent::enroll))
        .route("/v1/agent/work", get(agent::work))
        .route("/v1/agent/inventory", put(agent::inventory))
        .route(
            "/v1/agent/software",
            post(agent::software).layer(axum::extract::DefaultBodyLimit::max(agent::MAX_SOFTWARE_BODY_BYTES)),
        )
        .route(
            "/v1/advisories",
            get(advisories::list)
                .post(advisories::import)
                .layer(axum::extract::DefaultBodyLimit::max(advisories::MAX_DOCUMENT_BYTES)),
        )
        .route("/v1/advisories/{id}", get(advisories::show))
        .route("/v1/cves/{id}", get(advisories::show_cve))
        .route("/v1/campaigns", get(campaigns::list))
        .route(
            "/v1/campaigns/{name}",
            get(campaigns::show)
                .put(campaigns::apply)
                .layer(axum::extract::DefaultBodyLimit::max(campaigns::MAX_SPEC_BYTES)),
        )
        .route("/v1/campaigns/{name}/devices", get(campaign_months::devices))
        .route("/v1/campaigns/{name}/bad-patch", post(campaign_months::bad_patch))
        .route("/v1/campaigns/{name}/months/{month}", get(campaign_months::show_month))
        .route("/v1/campaigns/{name}/steps/{step}/{action}", post(campaign_months::step_action))
        .route("/v1/campaigns/{name}/vulns/{advisory}/{action}", post(campaign_months::vuln_action))
        .route("/v1/campaigns/{name}/{action}", post(campaign_months::month_action))
        .route("/v1/agent/patch-health", post(campaign_months::patch_health))
        .route("/v1/feeds", get(feeds::list).post(feeds::create))
        .route("/v1/feeds/{name}/run", post(feeds::run_now))
        .route("/v1/feeds/{name}/runs", get(feeds::runs))
        .route("/v1/agent/reports", post(agent::report))
        .route("/v1/agent/packages/{sha256}", get(agent::download))
        .route("/v1/enroll-tokens", post(manage::create_enroll_token))
        .route("/v1/packages", get(manage::list_packages))
        .route(
            "/v1/packages/{product}/{version}",
            put(manage::upload_package).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/v1/sets", get(manage::list_sets).post(manage::create_set))
        .route("/v1/sets/{name}", get(manage::show_set))
        .route("/v1/sets/{name}/{action}", post(manage::set_action))
        .route("/v1/endpoints", get(manage::list_endpoints))
        .route("/v1/endpoints/batch", post(agent::enroll_batch).layer(axum::extract::DefaultBodyLimit::max(64 * 1024)))
        .route("/v1/endpoints/{id}", get(manage::show_endpoint))
        .route("/v1/tuf/root", put(tuf::put_root).layer(axum::extract::DefaultBodyLimit::max(tuf::MAX_ROOT_BYTES)))
        .route(
            "/v1/tuf/targets",
            put(tuf::put_targets).layer(axum::extract::DefaultBodyLimit::max(tuf::MAX_TARGETS_BYTES)),
        )
        .route("/v1/tuf/metadata/{name}", get(tuf::metadata))
        .route("/v1/tuf/targets/{name}", get(tuf::target))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
        })
        .with_state(state)
}

/// The error every route answers with: a status, a stable code and a message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// The message, for callers that report it elsewhere (the feed poller).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!("{}: {}", self.code, self.message);
        }
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_string(), message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        let message = err.to_string();
        match err {
            StoreError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            StoreError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Invalid(_) => ApiError::bad_request(message),
            StoreError::Member(MemberError::AttemptOutOfOrder { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "attempt_out_of_order", message)
            }
            StoreError::Member(MemberError::AttemptNotStarted { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "attempt_not_started", message)
            }
            StoreError::TokenRefused(_) => ApiError::new(StatusCode::UNAUTHORIZED, "enroll_refused", message),
            StoreError::Member(MemberError::NoSlot(_)) => ApiError::new(StatusCode::CONFLICT, "no_slot", message),
            StoreError::Member(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::SetTransition(_) => ApiError::new(StatusCode::CONFLICT, "invalid_state", message),
            StoreError::Corrupt(_) | StoreError::Database(_) | StoreError::Migrate(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("{err:#}"))
    }
}

/// A JSON body whose rejections (bad syntax, unknown fields, wrong content type) become
/// [`ApiError`]s with a clear message.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "JSON body is larger than 2 MiB"))
            }
            Err(rejection) => Err(ApiError::bad_request(format!("invalid JSON body: {}", rejection.body_text()))),
        }
    }
}

/// Query parameters whose rejections become [`ApiError`]s.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => {
                let rejection: QueryRejection = rejection;
                Err(ApiError::bad_request(format!("invalid query string: {}", rejection.body_text())))
            }
        }
    }
}

/// Path parameters whose rejections become [`ApiError`]s.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathParams(value)),
            Err(rejection) => {
                let rejection: PathRejection = rejection;
                Err(ApiError::bad_request(format!("invalid path: {}", rejection.body_text())))
            }
        }
    }
}

/// The current time at the store's precision (milliseconds), so that what a route answers
/// equals what a later read returns.
pub fn now_ms() -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now)
}

/// An operator authenticated by the admin bearer token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        // The scheme is case-insensitive (RFC 9110).
        let token = header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t);
        let Some(token) = token else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing admin token: send `Authorization: Bearer TOKEN` (the CLI reads --token or ROLLGATE_TOKEN)",
            ));
        };
        if crate::bootstrap::secret_hash(token.trim()) != *state.admin_token_sha256 {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong admin token"));
        }
        Ok(Admin)
    }
}

/// An enrolled agent, authenticated by its client certificate.
pub struct AgentId(pub String);

impl FromRequestParts<AppState> for AgentId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<PeerIdentity>().and_then(|p| p.0.clone());
        let Some(peer) = peer else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "client_certificate_required",
                "this route is for enrolled agents and needs their client certificate (mutual TLS)",
            ));
        };
        let Some(matches) = state.hot.certificate_matches(&peer.endpoint_id, &peer.fingerprint).await? else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unknown_endpoint",
                "certificate names an unknown endpoint",
            ));
        };
        if !matches {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unknown_certificate",
                "certificate is not the one issued to this endpoint",
            ));
        }
        Ok(AgentId(peer.endpoint_id))
    }
}

/// Checks a product name: it becomes a directory name on endpoints.
pub fn validate_product(name: &str) -> Result<(), ApiError> {
    rollgate_core::names::validate("product", name).map_err(ApiError::bad_request)
}

/// RFC 3339 for the wire.
pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.to_string()
}
