//! The chat page at `/` and Swagger UI in Debian's Chromium, driven by Playwright (tests/browser/): on a
//! server of its own, whose model is served under a name of its own, so that Swagger's pre-filled
//! examples are proven to work whatever the served name is; on the binary with an API key in its models
//! file (the page asks for the key); and on the tiny vision model (an attached image reaches it).

use crate::common::{smollm2_models_file, start_server};
use crate::drain::{signal, spawn_binary, wait_exit};
use crate::openai_python::pytest;
use crate::vision;

const SERVED_NAME: &str = "house-model";
const KEY: &str = "sk-test-page-5b7d9f1h3j";

#[test]
fn the_chat_page_and_swagger_ui_in_a_real_browser() {
    let base = start_server(|config| config.model.served_name = SERVED_NAME.to_string());
    let file = smollm2_models_file(
        "browser",
        &format!("[[keys]]\nid = \"page\"\nkey = \"{KEY}\"\nrole = \"user\"\n"),
    );
    let (mut keyed, keyed_addr, _) = spawn_binary(&["--config", &file.display().to_string()]);
    let outcome = std::panic::catch_unwind(|| {
        pytest(
            "browser",
            &[
                ("LLMSERVE_BASE", base),
                ("LLMSERVE_MODEL", SERVED_NAME.to_string()),
                ("LLMSERVE_KEYED_BASE", format!("http://{keyed_addr}")),
                ("LLMSERVE_KEY", KEY.to_string()),
                ("LLMSERVE_VISION_BASE", vision::vision_server().to_string()),
                ("LLMSERVE_VISION_MODEL", vision::SERVED_NAME.to_string()),
            ],
        )
    });
    signal(&keyed, "TERM");
    wait_exit(&mut keyed, std::time::Duration::from_secs(30));
    let _ = std::fs::remove_file(&file);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
