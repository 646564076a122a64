//! Authorization in the handler's type, as Meilisearch's `GuardedData<ActionPolicy<A>, D>`: a handler's
//! first argument is a [`Guarded<P, D>`], whose policy `P` names what the route needs, and every route is
//! registered through [`super::guarded`], which takes no other handler. So a route that names no policy
//! does not compile, and the check runs on the route that actually matched, after actix decoded the path:
//! no spelling of a path (`/admin/%75sage`) reaches a handler without its own policy's check.
//!
//! The policies and the decision are transport-neutral (`gateway::access`; gRPC's `grpc::auth` uses the
//! same). The middleware [`authenticate`] only reads the presented key into an [`Authentication`]; it
//! grants nothing and refuses nothing. [`Guarded`] decides, in this order, before anything expensive:
//! 1. the policy's access (a key whose role has the action; 401 / 403), where a missing authentication
//!    refuses the request whenever keys are configured;
//! 2. for policies that count ([`Policy::COUNTED`]), the key's admission (requests per minute and
//!    concurrency, 429) and its byte cap on the body (413, from `Content-Length`);
//! 3. then, and only then, the data `D` (the JSON body, read under the key's byte cap and the body-read
//!    deadline).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, FromRequest, HttpMessage, HttpRequest};

use crate::error::{ApiError, RequestError};
use crate::extract::KeyBodyLimit;
use crate::gateway::access::{authorize, Authentication, Policy};
use crate::gateway::limiter::KeyBudget;
use crate::gateway::Principal;
use crate::request_log::RequestLog;
use crate::state::AppState;

/// The policies handlers name (`Guarded<policy::ChatCompletions, _>`).
pub use crate::gateway::access::policy;

/// The key a request presents.
fn presented_key(req: &ServiceRequest) -> Option<String> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    crate::gateway::presented_key(
        header(actix_web::http::header::AUTHORIZATION.as_str()),
        header("x-api-key"),
    )
    .map(str::to_string)
}

/// The middleware: who is calling (never whether they may; that is the handler's [`Guarded`]).
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>().cloned() {
        let authentication = match state
            .gateway
            .authenticate(presented_key(&req).as_deref(), crate::ids::unix_now())
        {
            Ok(principal) => {
                if let (Some(key), Some(log)) = (
                    principal.key_id.as_deref(),
                    req.extensions().get::<RequestLog>(),
                ) {
                    log.set_key(key);
                }
                Authentication::Caller(principal)
            }
            Err(error) => Authentication::Refused(error),
        };
        req.extensions_mut().insert(authentication);
    }
    next.call(req).await
}

/// The middleware of `--metrics-port`, a port of its own for scrapers: whoever reaches it may read the
/// metrics, and nothing else.
pub async fn scraper(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    req.extensions_mut()
        .insert(Authentication::Caller(Principal::scraper()));
    next.call(req).await
}

/// A handler's authorized caller and its data, in that order: `P`'s check (and, for counted policies,
/// the key's admission) runs before `D` is extracted, so a refused request's body is never read. `D`
/// takes the request's payload: a handler reads its body through `D` (`Guarded<P, ApiJson<T>>`), never
/// through a later argument, which would find it empty.
pub struct Guarded<P: Policy, D = ()> {
    pub caller: Principal,
    /// The caller's hold on its key's limits (held from admission to the response's end; unlimited for
    /// policies that count nothing and keys without limits).
    pub budget: KeyBudget,
    pub data: D,
    policy: PhantomData<P>,
}

impl<P: Policy, D> Guarded<P, D> {
    pub fn into_parts(self) -> (Principal, KeyBudget, D) {
        (self.caller, self.budget, self.data)
    }
}

impl<P: Policy, D> FromRequest for Guarded<P, D>
where
    D: FromRequest + 'static,
    D::Error: Into<Error>,
{
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let state = req.app_data::<web::Data<AppState>>().cloned();
            let keys_configured = state.as_ref().is_some_and(|s| !s.gateway.is_open());
            let authentication = req.extensions().get::<Authentication>().cloned();
            let caller = authorize(P::ACCESS, authentication.as_ref(), keys_configured)
                .map_err(ApiError::from)?;
            let budget = match state {
                Some(state) if P::COUNTED => admit(&state, &caller, &req).await?,
                _ => KeyBudget::unlimited(),
            };
            let data = D::from_request(&req, &mut payload)
                .await
                .map_err(Into::into)?;
            Ok(Guarded {
                caller,
                budget,
                data,
                policy: PhantomData,
            })
        })
    }
}

/// The key's admission and byte cap, before the body. The budget goes with the request into the
/// generation service, which settles it at the answer's end; a request that never gets there frees its
/// slot when its budget is dropped.
async fn admit(
    state: &AppState,
    caller: &Principal,
    req: &HttpRequest,
) -> Result<KeyBudget, ApiError> {
    let Some(key) = caller.key_id.as_deref() else {
        return Ok(KeyBudget::unlimited());
    };
    if let Some(limit) = caller.limits.max_request_bytes {
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(given) = declared.filter(|&n| n > limit) {
            return Err(RequestError::PayloadTooLarge { limit, given }.into());
        }
        req.extensions_mut().insert(KeyBodyLimit(limit));
    }
    Ok(state.limiter.admit(key, caller.limits).await?)
}
