//! Errors: [`ServerError`] for starting the server, [`ApiError`] for answering a request with
//! an OpenAI-style JSON body (`{"error": {"message", "type", "param", "code"}}`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lmrs_pipelines::PipelineError;

/// Starting or running the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The model could not be found or loaded.
    #[error("cannot load model '{reference}': {source}")]
    Load {
        /// The model reference as given.
        reference: String,
        /// What went wrong.
        #[source]
        source: PipelineError,
    },
    /// The model folder could not be resolved or read.
    #[error("cannot read model '{reference}': {source}")]
    ModelFolder {
        /// The model reference as given.
        reference: String,
        /// What went wrong.
        #[source]
        source: lmrs_io::IoError,
    },
    /// An option or the model's kind is unusable (message says which).
    #[error("{0}")]
    Config(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `host:port` as asked.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The listening socket or the HTTP server failed.
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// An error answer: HTTP status plus the OpenAI error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (4xx for the client's mistakes, 5xx for ours).
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI error `type`: `invalid_request_error`, `authentication_error`,
    /// `rate_limit_error`, `server_error`...
    pub kind: &'static str,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// Machine-readable code (`queue_full`, `context_length_exceeded`...).
    pub code: Option<&'static str>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// 400: the request is malformed or an option is invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 401: missing or wrong API key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
            .with_code("invalid_api_key")
    }

    /// 403: the request is not allowed here (a `Host` that is not this machine).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message).with_code("forbidden_host")
    }

    /// 408: the client did not send its whole body within `--body-timeout`.
    pub fn body_timeout(secs: f64) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!("the request body did not arrive within the server's {secs} s body timeout"),
        )
        .with_code("body_timeout")
    }

    /// 415: the body is not sent as JSON.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            message,
        )
        .with_code("unsupported_media_type")
    }

    /// 404: no such route, model or capability.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).with_code("not_found")
    }

    /// 405: the route exists but not with this method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            message,
        )
        .with_code("method_not_allowed")
    }

    /// 413: the body is over the size limit.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            message,
        )
        .with_code("payload_too_large")
    }

    /// 429: the queue is full; the client should retry later.
    pub fn queue_full(capacity: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!("the server is at capacity ({capacity} requests queued); retry later"),
        )
        .with_code("queue_full")
    }

    /// 503: the server is shutting down.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "the server is shutting down",
        )
        .with_code("shutting_down")
    }

    /// 504: the request waited or ran longer than `--request-timeout`.
    pub fn timeout(secs: f64) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            format!("the request did not finish within the server's {secs} s timeout"),
        )
        .with_code("timeout")
    }

    /// 500: something failed on our side.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// 404 for a route the loaded model cannot serve (a T5 model asked for chat).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
            .with_code("model_not_supported")
            .with_param("model")
    }

    /// Name the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Set the machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.body())).into_response();
        let headers = res.headers_mut();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The body is half read: the connection cannot carry another request.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::EmptyInput { .. } => {
                ApiError::bad_request(e.to_string()).with_param("input")
            }
            PipelineError::Tokenize(_) | PipelineError::Task(_) => {
                ApiError::bad_request(e.to_string())
            }
            PipelineError::Core(core) => core.into(),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<lmrs_core::Error> for ApiError {
    fn from(e: lmrs_core::Error) -> Self {
        match e {
            // A request whose caches would not fit in memory is the request's fault (too many
            // rows, beams or tokens), refused before anything was allocated.
            lmrs_core::Error::InvalidInput(_)
            | lmrs_core::Error::InvalidOption(_)
            | lmrs_core::Error::TooLarge { .. } => ApiError::bad_request(e.to_string()),
            lmrs_core::Error::NonFinite(_) => {
                ApiError::internal(format!("the model produced unusable output: {e}"))
                    .with_code("non_finite_output")
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}
