//! The HTTP side of the request log: the actix middleware that gives each request its id (accepted from
//! `x-request-id` or made), span and [`RequestLog`], echoes the id, and hands the log line to the response
//! body, which writes it when the body ends or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest};
use tracing::Instrument;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::otlp::{SpanExporter, TraceContext};
use crate::request_log::{
    accepted_request_id, log_failure, LogLine, RequestLog, CLIENT_CLOSED_REQUEST,
    REQUEST_ID_HEADER, TRACEPARENT_HEADER,
};

impl FromRequest for RequestLog {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Outside the middleware (unit tests of single handlers) a detached log is fine.
        std::future::ready(Ok(req
            .extensions()
            .get::<RequestLog>()
            .cloned()
            .unwrap_or_else(RequestLog::default)))
    }
}

fn request_id(req: &ServiceRequest) -> String {
    accepted_request_id(
        req.headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Middleware: request id (accepted from `x-request-id` or made), a span, the echoed header, the log line.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<LoggedBody>, Error> {
    let id = request_id(&req);
    let metrics = req
        .app_data::<actix_web::web::Data<Metrics>>()
        .map(|data| data.clone().into_inner());
    let exporter = req
        .app_data::<actix_web::web::Data<SpanExporter>>()
        .map(|data| data.get_ref().clone());
    let trace = TraceContext::from_traceparent(
        req.headers()
            .get(TRACEPARENT_HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let started_at = SystemTime::now();
    let log = RequestLog::new(metrics);
    req.extensions_mut().insert(log.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        trace_id = %trace.trace_id,
        span_id = %trace.span_id
    );
    // The line exists before the handler runs: a client that goes away before the response (a
    // non-streamed request abandoned mid-generation drops this future) still gets its line, as 499
    // (nginx's "client closed request"), counted as a disconnect.
    let mut line = LogLine {
        span: span.clone(),
        request_id: id.clone(),
        method: req.method().to_string(),
        path: req.path().to_string(),
        route: req
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string()),
        status: CLIENT_CLOSED_REQUEST,
        grpc_code: None,
        log: log.clone(),
        completed: false,
        trace: exporter.map(|exporter| (exporter, trace, started_at)),
    };
    let mut response = match next.call(req).instrument(span).await {
        Ok(response) => response,
        Err(error) => {
            line.status = error.as_response_error().status_code().as_u16();
            line.completed = true;
            return Err(error);
        }
    };
    response.headers_mut().insert(
        HeaderName::from_static(REQUEST_ID_HEADER),
        HeaderValue::from_str(&id).expect("request ids are visible ASCII"),
    );
    line.status = response.status().as_u16();
    if let Some(error) = response.response().error() {
        if let Some(error) = error.as_error::<ApiError>() {
            log.set_error(error.label());
            if error.is_failure() {
                let _entered = line.span.enter();
                log_failure(error, log.key_id().is_some());
            }
        }
    }
    // Route templates only: a metric label never carries a raw path.
    line.route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    Ok(response.map_body(move |_, body| {
        let mut line = line;
        // A body with nothing to send is never polled to its end: it is complete as it stands.
        line.completed = matches!(body.size(), BodySize::None | BodySize::Sized(0));
        LoggedBody {
            inner: body.boxed(),
            line,
        }
    }))
}

/// The response body, passed through unchanged; the request's log line is written when it ends.
pub struct LoggedBody {
    inner: BoxBody,
    line: LogLine,
}

impl MessageBody for LoggedBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        if let Poll::Ready(None) = polled {
            this.line.completed = true;
        }
        polled
    }
}
