//! Authorization on the gRPC port, from one exhaustive table of every method it serves ([`Method`]): a
//! tower layer in front of all its services authenticates the call's key, decides the method's access
//! with the same function as HTTP (`gateway::access::authorize`) and, for methods that count, admits the
//! call against its key's requests per minute and concurrency before its message is decoded. A path not
//! in the table is refused (UNIMPLEMENTED): nothing is granted by default. The service's handlers then
//! take their caller with [`authorized`], naming their policy, which must be the table's.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::{Request, Status};

use crate::error::ApiError;
use crate::gateway::access::{authorize, policy, Access, Authentication, Policy};
use crate::gateway::limiter::KeyBudget;
use crate::gateway::{GatewayError, Principal};
use crate::generation::Caller;
use crate::request_log::{CallLog, RequestLog, REQUEST_ID_HEADER, TRACEPARENT_HEADER};
use crate::state::AppState;

/// Every method the gRPC port serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Generate,
    GenerateOnce,
    Chat,
    ListModels,
    Tokenize,
    HealthCheck,
    HealthWatch,
    ReflectionV1,
    ReflectionV1Alpha,
}

/// A method's access, and whether a call counts against its key's requests and concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodPolicy {
    pub access: Access,
    pub counted: bool,
}

fn of<P: Policy>() -> MethodPolicy {
    MethodPolicy {
        access: P::ACCESS,
        counted: P::COUNTED,
    }
}

impl Method {
    pub const ALL: [Method; 9] = [
        Method::Generate,
        Method::GenerateOnce,
        Method::Chat,
        Method::ListModels,
        Method::Tokenize,
        Method::HealthCheck,
        Method::HealthWatch,
        Method::ReflectionV1,
        Method::ReflectionV1Alpha,
    ];

    /// The HTTP/2 path a call of it has.
    pub fn path(self) -> &'static str {
        match self {
            Method::Generate => "/llmserve.v1.Llmserve/Generate",
            Method::GenerateOnce => "/llmserve.v1.Llmserve/GenerateOnce",
            Method::Chat => "/llmserve.v1.Llmserve/Chat",
            Method::ListModels => "/llmserve.v1.Llmserve/ListModels",
            Method::Tokenize => "/llmserve.v1.Llmserve/Tokenize",
            Method::HealthCheck => "/grpc.health.v1.Health/Check",
            Method::HealthWatch => "/grpc.health.v1.Health/Watch",
            Method::ReflectionV1 => "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            Method::ReflectionV1Alpha => {
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
            }
        }
    }

    /// The method of a path, exactly as written (no decoding: a path the router would not serve as
    /// written is not in the table either).
    pub fn from_path(path: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.path() == path)
    }

    /// What a call needs: the same policies as the HTTP routes. Reflection describes the API, like
    /// `/openapi.json`; health is for probes.
    pub fn policy(self) -> MethodPolicy {
        match self {
            Method::Generate | Method::GenerateOnce => of::<policy::Completions>(),
            Method::Chat => of::<policy::ChatCompletions>(),
            Method::ListModels => of::<policy::ModelsRead>(),
            Method::Tokenize => of::<policy::Tokenize>(),
            Method::HealthCheck | Method::HealthWatch => of::<policy::Public>(),
            Method::ReflectionV1 | Method::ReflectionV1Alpha => of::<policy::DocsRead>(),
        }
    }
}

/// What the layer decided for a call, handed to its handler in the request's extensions.
#[derive(Clone)]
pub struct Grant {
    pub caller: Principal,
    access: Access,
    budget: KeyBudget,
}

/// The key a call presents, from its metadata (HTTP/2 headers).
fn presented_key(headers: &http::HeaderMap) -> Option<String> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    crate::gateway::presented_key(text("authorization"), text("x-api-key")).map(str::to_string)
}

/// The decision for one call: its grant, or the status that refuses it.
pub async fn decide(
    state: &AppState,
    path: &str,
    headers: &http::HeaderMap,
) -> Result<Grant, ApiError> {
    let Some(method) = Method::from_path(path) else {
        return Err(ApiError::RouteNotFound(path.to_string()));
    };
    let MethodPolicy { access, counted } = method.policy();
    let authentication = match state
        .gateway
        .authenticate(presented_key(headers).as_deref(), crate::ids::unix_now())
    {
        Ok(principal) => Authentication::Caller(principal),
        Err(error) => Authentication::Refused(error),
    };
    let caller = authorize(access, Some(&authentication), !state.gateway.is_open())?;
    let budget = match caller.key_id.as_deref() {
        Some(key) if counted => state.limiter.admit(key, caller.limits).await?,
        _ => KeyBudget::unlimited(),
    };
    Ok(Grant {
        caller,
        access,
        budget,
    })
}

/// A handler's caller, for its policy `P`: the grant the layer made for this call, whose access must
/// be `P`'s (a handler and the table that disagree refuse the call). Its key goes into the call's log;
/// its budget goes with the call into the generation service, which settles it at the answer's end
/// (a call that never reaches generation frees its slot when the budget is dropped).
pub fn authorized<P: Policy, T>(
    request: &Request<T>,
    log: &RequestLog,
) -> Result<Caller, ApiError> {
    let grant = request
        .extensions()
        .get::<Grant>()
        .cloned()
        .filter(|grant| grant.access == P::ACCESS)
        .ok_or(GatewayError::MissingKey)?;
    if let Some(key) = grant.caller.key_id.as_deref() {
        log.set_key(key);
    }
    Ok(Caller {
        principal: grant.caller,
        budget: grant.budget,
    })
}

/// The tower layer that puts [`decide`] in front of every gRPC service.
#[derive(Clone)]
pub struct AuthLayer {
    pub state: Arc<AppState>,
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Authorizing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorizing {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authorizing<S> {
    inner: S,
    state: Arc<AppState>,
}

impl<S> tower_service::Service<http::Request<Body>> for Authorizing<S>
where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone that was made ready is the one called (tower's rule for cloned services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            match decide(&state, request.uri().path(), request.headers()).await {
                Ok(grant) => {
                    request.extensions_mut().insert(grant);
                    inner.call(request).await
                }
                Err(error) => {
                    // Logged and counted like any call: the handler, which would, never runs.
                    let headers = request.headers();
                    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                    let mut call = CallLog::grpc(
                        request.uri().path(),
                        text(REQUEST_ID_HEADER),
                        text(TRACEPARENT_HEADER),
                        Some(state.metrics.clone()),
                        state.spans.clone(),
                    );
                    let status: Status = super::status::refuse(&mut call, &error);
                    call.completed();
                    Ok(status.into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Every method of every service the port serves, from their descriptors.
    fn described_methods() -> Vec<String> {
        let mut paths = Vec::new();
        for set in [
            super::super::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let set = prost_types::FileDescriptorSet::decode(set).unwrap();
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        paths.push(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        paths.sort();
        paths.dedup();
        paths
    }

    #[test]
    fn the_table_has_every_served_method_and_no_other() {
        let mut table: Vec<String> = Method::ALL.iter().map(|m| m.path().to_string()).collect();
        table.sort();
        assert_eq!(table, described_methods());
        for method in Method::ALL {
            assert_eq!(Method::from_path(method.path()), Some(method));
        }
    }

    #[test]
    fn a_path_not_written_exactly_is_no_method() {
        for path in [
            "/llmserve.v1.Llmserve/%43hat",
            "/llmserve.v1.Llmserve/chat",
            "/llmserve.v1.Llmserve/Chat/",
            "//llmserve.v1.Llmserve/Chat",
            "/llmserve.v1.Llmserve%2FChat",
        ] {
            assert_eq!(Method::from_path(path), None, "{path}");
        }
    }
}
