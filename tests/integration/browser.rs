//! The chat page at `/` and Swagger UI in Debian's Chromium, driven by Playwright (tests/browser/): on a
//! server of its own, whose model is served under a name of its own, so that Swagger's pre-filled
//! examples are proven to work whatever the served name is.

use crate::common::start_server;
use crate::openai_python::pytest;

const SERVED_NAME: &str = "house-model";

#[test]
fn the_chat_page_and_swagger_ui_in_a_real_browser() {
    let base = start_server(|config| config.model.served_name = SERVED_NAME.to_string());
    pytest(
        "browser",
        &[
            ("LLMSERVE_BASE", base),
            ("LLMSERVE_MODEL", SERVED_NAME.to_string()),
        ],
    );
}
