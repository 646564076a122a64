//! What a route or gRPC method needs from its caller, as a type: each handler names a [`Policy`]
//! (`policy::ChatCompletions`), whose [`Access`] the fronts check on the route or method that actually
//! matched (`routes::auth::Guarded`, `grpc::auth`). The decision ([`authorize`]) is one function for both
//! fronts, and it never grants by default: without an authentication, nobody passes where keys exist.

use crate::config::keys::Action;

use super::{GatewayError, Principal};

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the probes, the chat page, and the answers for routes and methods that do not exist. A
    /// valid key, if presented, still reaches the handler.
    Public,
    /// A key whose role has this action (every caller, on a server without keys, but for the actions
    /// only a key can have).
    Action(Action),
}

/// A route's policy, named in its handler's type.
pub trait Policy: 'static {
    const ACCESS: Access;
    /// Whether a request counts against its key's requests per minute and concurrency (and its body
    /// against the key's byte cap), decided before the body is read.
    const COUNTED: bool = false;
}

/// The policies, one per kind of route.
pub mod policy {
    use super::{Access, Action, Policy};

    macro_rules! policies {
        ($($(#[$doc:meta])* $name:ident: $access:expr, counted: $counted:expr;)*) => {$(
            $(#[$doc])*
            pub struct $name;
            impl Policy for $name {
                const ACCESS: Access = $access;
                const COUNTED: bool = $counted;
            }
        )*};
    }

    policies! {
        /// The probes, the chat page, unknown routes and methods.
        Public: Access::Public, counted: false;
        /// `POST /v1/chat/completions`.
        ChatCompletions: Access::Action(Action::ChatCompletions), counted: true;
        /// `POST /v1/completions`.
        Completions: Access::Action(Action::Completions), counted: true;
        /// `POST /v1/responses`.
        CreateResponse: Access::Action(Action::Responses), counted: true;
        /// `GET`, `DELETE /v1/responses/{id}`: the caller's own stored responses.
        StoredResponses: Access::Action(Action::Responses), counted: false;
        /// `POST /v1/embeddings`.
        Embeddings: Access::Action(Action::Embeddings), counted: true;
        /// `POST /tokenize`, `/detokenize`.
        Tokenize: Access::Action(Action::Tokenize), counted: true;
        /// `GET /v1/models`, `/v1/models/{model}`.
        ModelsRead: Access::Action(Action::ModelsRead), counted: false;
        /// `GET /metrics`.
        MetricsRead: Access::Action(Action::MetricsRead), counted: false;
        /// `/admin/...`.
        Admin: Access::Action(Action::Admin), counted: false;
        /// `/openapi.json`, `/docs`.
        DocsRead: Access::Action(Action::DocsRead), counted: false;
    }
}

/// Who the middleware found behind the request's key.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// A valid key, or anyone on a server without keys.
    Caller(Principal),
    /// Keys are configured, and the key is missing, wrong or expired.
    Refused(GatewayError),
}

/// The decision: the caller a handler of `access` gets, or why not. `authentication` is `None` when no
/// middleware authenticated the request; then nobody is let in where keys are configured.
pub fn authorize(
    access: Access,
    authentication: Option<&Authentication>,
    keys_configured: bool,
) -> Result<Principal, GatewayError> {
    let authentication = match authentication {
        Some(authentication) => authentication.clone(),
        None if keys_configured => Authentication::Refused(GatewayError::MissingKey),
        None => Authentication::Caller(Principal::open()),
    };
    match (access, authentication) {
        (Access::Public, Authentication::Caller(principal)) => Ok(principal),
        (Access::Public, Authentication::Refused(_)) => Ok(Principal::anonymous()),
        (_, Authentication::Refused(error)) => Err(error),
        (Access::Action(action), Authentication::Caller(principal)) => {
            principal.require(action)?;
            Ok(principal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_authentication_nobody_passes_where_keys_exist() {
        for access in [
            Access::Action(Action::ChatCompletions),
            Access::Action(Action::Admin),
        ] {
            assert_eq!(
                authorize(access, None, true),
                Err(GatewayError::MissingKey),
                "{access:?}"
            );
        }
        // Public routes still answer, to nobody in particular.
        assert_eq!(
            authorize(Access::Public, None, true),
            Ok(Principal::anonymous())
        );
        // Without keys: the open caller, who still cannot administer.
        assert!(authorize(Access::Action(Action::ChatCompletions), None, false).is_ok());
        assert_eq!(
            authorize(Access::Action(Action::Admin), None, false),
            Err(GatewayError::KeysNotConfigured { action: "admin" })
        );
    }

    #[test]
    fn a_refused_key_is_refused_everywhere_but_on_public_routes() {
        let refused = Authentication::Refused(GatewayError::InvalidKey);
        assert_eq!(
            authorize(Access::Action(Action::DocsRead), Some(&refused), true),
            Err(GatewayError::InvalidKey)
        );
        assert_eq!(
            authorize(Access::Public, Some(&refused), true),
            Ok(Principal::anonymous())
        );
        let scraper = Authentication::Caller(Principal::scraper());
        assert!(authorize(Access::Action(Action::MetricsRead), Some(&scraper), true).is_ok());
        assert!(matches!(
            authorize(Access::Action(Action::ModelsRead), Some(&scraper), true),
            Err(GatewayError::PermissionDenied { .. })
        ));
    }
}
