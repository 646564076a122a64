//! Access control, tried as an attacker would, on the HTTP app with a scripted engine: every route (the
//! table below, held against the OpenAPI document) × every role × spellings of its path. A spelling is
//! decided as the plain path is, or is a 404; no route answers without its policy's check.

use std::time::Duration;

use actix_web::test::{call_service, init_service, read_body};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use crate::config::keys::Limits;
use crate::engine::scripted::engine;
use crate::server::access_support::{finished, request, serving};
use crate::server::app;

/// Every route: method, template, a concrete path, and a body that is cheap to refuse (a bad field) so
/// that an allowed request never does real work.
const ROUTES: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "POST",
        "/v1/chat/completions",
        "/v1/chat/completions",
        Some("{\"nonsense\": 1}"),
    ),
    (
        "POST",
        "/v1/completions",
        "/v1/completions",
        Some("{\"nonsense\": 1}"),
    ),
    (
        "POST",
        "/v1/embeddings",
        "/v1/embeddings",
        Some("{\"nonsense\": 1}"),
    ),
    (
        "POST",
        "/v1/responses",
        "/v1/responses",
        Some("{\"nonsense\": 1}"),
    ),
    (
        "GET",
        "/v1/responses/{response_id}",
        "/v1/responses/resp_x",
        None,
    ),
    (
        "DELETE",
        "/v1/responses/{response_id}",
        "/v1/responses/resp_x",
        None,
    ),
    ("GET", "/v1/models", "/v1/models", None),
    ("GET", "/v1/models/{model}", "/v1/models/smollm2", None),
    ("POST", "/tokenize", "/tokenize", Some("{\"nonsense\": 1}")),
    (
        "POST",
        "/detokenize",
        "/detokenize",
        Some("{\"nonsense\": 1}"),
    ),
    ("GET", "/health", "/health", None),
    ("GET", "/health/live", "/health/live", None),
    ("GET", "/health/ready", "/health/ready", None),
    ("GET", "/health/startup", "/health/startup", None),
    ("GET", "/openapi.json", "/openapi.json", None),
    ("GET", "/docs", "/docs", None),
    ("GET", "/docs/{file:.*}", "/docs/index.html", None),
    ("GET", "/metrics", "/metrics", None),
    ("GET", "/admin/models", "/admin/models", None),
    (
        "POST",
        "/admin/models/{model}/versions",
        "/admin/models/m/versions",
        Some("{\"nonsense\": 1}"),
    ),
    (
        "DELETE",
        "/admin/models/{model}/versions/{version}",
        "/admin/models/m/versions/v9",
        None,
    ),
    (
        "PUT",
        "/admin/aliases/{alias}",
        "/admin/aliases/a",
        Some("{\"nonsense\": 1}"),
    ),
    (
        "POST",
        "/admin/aliases/{alias}/promote",
        "/admin/aliases/a/promote",
        Some("{\"nonsense\": 1}"),
    ),
    (
        "POST",
        "/admin/aliases/{alias}/rollback",
        "/admin/aliases/a/rollback",
        None,
    ),
    ("POST", "/admin/reload", "/admin/reload", None),
    ("GET", "/admin/usage", "/admin/usage", None),
    ("GET", "/", "/", None),
    ("GET", "/ui/{asset}", "/ui/app.js", None),
];

/// Routes the OpenAPI document does not list (the page, the document itself, Swagger UI, `/health`).
const UNDOCUMENTED: &[&str] = &[
    "/",
    "/ui/{asset}",
    "/openapi.json",
    "/docs",
    "/docs/{file:.*}",
    "/health",
];

/// Callers: a key of each built-in role, two one-action roles, a wrong key and none.
const CALLERS: &[(&str, Option<&str>)] = &[
    ("admin", Some("sk-access-admin-000000000001")),
    ("user", Some("sk-access-user-0000000000002")),
    ("metrics", Some("sk-access-metrics-0000000003")),
    ("completer", Some("sk-access-completer-00000004")),
    ("chatter", Some("sk-access-chatter-0000000005")),
    ("wrong", Some("sk-access-wrong-000000000006")),
    ("none", None),
];

/// Whether an answer is a refusal by the access check (401, 403) rather than anything after it.
fn denied(status: u16) -> bool {
    status == 401 || status == 403
}

#[test]
fn the_table_lists_every_documented_route_and_nothing_else() {
    let document = crate::openapi::document_value();
    let documented: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    let table: Vec<String> = ROUTES
        .iter()
        .map(|(m, t, _, _)| format!("{m} {t}"))
        .collect();
    for route in &documented {
        assert!(
            table.contains(route),
            "{route} is served but not in the table"
        );
    }
    for (method, template, _, _) in ROUTES {
        let route = format!("{method} {template}");
        assert!(
            documented.contains(&route) || UNDOCUMENTED.contains(template),
            "{route} is in the table but neither documented nor listed as undocumented"
        );
    }
}

/// Every route, plainly spelled: what each role may do.
#[actix_web::test]
async fn each_role_reaches_exactly_its_routes() {
    let state = serving(Limits::default(), engine(5, finished(), Duration::ZERO));
    let service = init_service(app(state)).await;
    for (method, template, path, body) in ROUTES {
        for (role, key) in CALLERS {
            let response =
                call_service(&service, request(method, path, *key, *body).to_request()).await;
            let status = response.status().as_u16();
            let public = [
                "/",
                "/ui/{asset}",
                "/health",
                "/health/live",
                "/health/ready",
                "/health/startup",
            ]
            .contains(template);
            let action = match *template {
                t if t.starts_with("/admin") => "admin",
                "/v1/chat/completions" => "chat.completions",
                "/v1/completions" => "completions",
                "/v1/embeddings" => "embeddings",
                t if t.starts_with("/v1/responses") => "responses",
                "/v1/models" | "/v1/models/{model}" => "models.read",
                "/tokenize" | "/detokenize" => "tokenize",
                "/metrics" => "metrics.read",
                "/openapi.json" | "/docs" | "/docs/{file:.*}" => "docs.read",
                _ => "",
            };
            let allowed = public
                || match *role {
                    "admin" => true,
                    "user" => !["admin", "metrics.read"].contains(&action),
                    "metrics" => action == "metrics.read",
                    "completer" => action == "completions",
                    "chatter" => action == "chat.completions",
                    _ => false,
                };
            assert_eq!(
                !denied(status),
                allowed,
                "{role} {method} {path}: {status} {}",
                String::from_utf8_lossy(&read_body(response).await)
            );
        }
    }
}

/// The spellings of a path that must not change its decision: each character percent-encoded (upper
/// and lower case hex), case changes, a trailing slash, doubled slashes, `.` segments, `%2F` for `/`.
fn spellings(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, c) in path.char_indices() {
        let (before, after) = (&path[..i], &path[i + c.len_utf8()..]);
        out.push(format!("{before}%{:02X}{after}", c as u32));
        out.push(format!("{before}%{:02x}{after}", c as u32));
        if c == '/' {
            out.push(format!("{before}//{after}"));
            out.push(format!("{before}/./{after}"));
            out.push(format!("{before}%2F{after}"));
            out.push(format!("{before}%2f{after}"));
        }
    }
    out.push(format!("{path}/"));
    out.push(path.to_uppercase());
    out.push(format!("/.{path}"));
    sendable(out)
}

/// What can be sent as a request target at all (an origin-form path that parses).
fn sendable(spellings: Vec<String>) -> Vec<String> {
    spellings
        .into_iter()
        .filter(|s| s.starts_with('/') && s.parse::<actix_web::http::Uri>().is_ok())
        .collect()
}

/// Random combinations of the single changes above, sampled with proptest.
fn combined_spellings(path: &str, count: usize) -> Vec<String> {
    let path = path.to_string();
    let strategy =
        proptest::collection::vec((0..path.len(), 0u8..6), 1..4).prop_map(move |edits| {
            let mut spelled = path.clone();
            for (at, kind) in edits {
                let at = at.min(spelled.len().saturating_sub(1));
                if !spelled.is_char_boundary(at) {
                    continue;
                }
                let c = spelled[at..].chars().next().unwrap_or('/');
                let replacement = match kind {
                    0 => format!("%{:02X}", c as u32),
                    1 => format!("%{:02x}", c as u32),
                    2 if c == '/' => "//".to_string(),
                    3 if c == '/' => "/./".to_string(),
                    4 if c == '/' => "%2F".to_string(),
                    _ => c.to_ascii_uppercase().to_string(),
                };
                spelled.replace_range(at..at + c.len_utf8(), &replacement);
            }
            spelled
        });
    let mut runner = TestRunner::deterministic();
    sendable(
        (0..count)
            .map(|_| strategy.new_tree(&mut runner).unwrap().current())
            .collect(),
    )
}

/// The bypass reported in issue 27 (`/admin/%75sage` read every key's usage with a user key) and its
/// whole class.
#[actix_web::test]
async fn no_spelling_of_a_path_changes_its_decision() {
    let state = serving(Limits::default(), engine(5, finished(), Duration::ZERO));
    let service = init_service(app(state)).await;
    let mut tried = 0;
    for (method, _, path, body) in ROUTES {
        let mut variants = spellings(path);
        variants.extend(combined_spellings(path, 24));
        for (role, key) in CALLERS {
            let plain = call_service(&service, request(method, path, *key, *body).to_request())
                .await
                .status()
                .as_u16();
            for variant in &variants {
                let status =
                    call_service(&service, request(method, variant, *key, *body).to_request())
                        .await
                        .status()
                        .as_u16();
                assert!(
                    denied(status) == denied(plain) || status == 404,
                    "{role} {method} {variant}: {status}, but {path}: {plain}"
                );
                tried += 1;
            }
        }
    }
    assert!(tried > 5_000, "{tried} requests");
}

/// A guarded handler still gets its body: an admin change with a valid body reaches the registry (a 404
/// for the unknown alias, not a 400 for a missing body).
#[actix_web::test]
async fn an_allowed_request_reaches_its_handler_with_its_body() {
    let state = serving(Limits::default(), engine(5, finished(), Duration::ZERO));
    let service = init_service(app(state)).await;
    let admin = Some("sk-access-admin-000000000001");
    for (method, path, body) in [
        (
            "PUT",
            "/admin/aliases/nope",
            r#"{"weights": {"smollm2@v9": 100}}"#,
        ),
        (
            "POST",
            "/admin/aliases/nope/promote",
            r#"{"version": "smollm2@v9"}"#,
        ),
    ] {
        let response = call_service(
            &service,
            request(method, path, admin, Some(body)).to_request(),
        )
        .await;
        let status = response.status().as_u16();
        let text = String::from_utf8_lossy(&read_body(response).await).to_string();
        assert!(
            status == 404 || status == 409,
            "{method} {path}: {status} {text}"
        );
    }
}
