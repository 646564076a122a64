//! Vision serving with the real loading code and engine: a tiny Idefics3 model written by the test
//! (`tiny_vision`), images sent as data URLs the way the Open-AutoGLM phone agent sends screenshots.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::{assert_envelope, post_json, post_sse, serve_model_dir, sse_data};
use crate::tiny_vision::{self, IMAGE_SEQ_LEN};

pub const SERVED_NAME: &str = "tiny-idefics3";

/// The server on the tiny vision model, shared by these tests and the SDK suites.
pub fn vision_server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| {
        serve_tiny_model(|config| config.model.version = "tiny-idefics3-test".to_string())
    })
}

/// Starts a server on a fresh copy of the tiny model, removed once loaded (the engine holds the weights).
fn serve_tiny_model(tweak: impl FnOnce(&mut llmserve::config::Config) + Send + 'static) -> String {
    serve_model_dir(tiny_vision::write_model(), SERVED_NAME, tweak)
}

/// A picture whose pixels depend on `pattern`, encoded as PNG or JPEG in a data URL.
fn picture(pattern: u8, format: image::ImageFormat) -> String {
    let picture = image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(5) ^ pattern,
            (y as u8).wrapping_mul(6).wrapping_add(pattern),
            pattern.wrapping_mul(37),
        ])
    });
    let mut encoded = Vec::new();
    picture
        .write_to(&mut std::io::Cursor::new(&mut encoded), format)
        .unwrap();
    format!(
        "data:{};base64,{}",
        format.to_mime_type(),
        STANDARD.encode(&encoded)
    )
}

fn ask(images: &[String]) -> Value {
    let mut content: Vec<Value> = images
        .iter()
        .map(|url| json!({"type": "image_url", "image_url": {"url": url}}))
        .collect();
    content.push(json!({"type": "text", "text": "What is on the screen?"}));
    json!({"model": SERVED_NAME, "messages": [{"role": "user", "content": content}],
        "max_tokens": 4, "temperature": 0, "logprobs": true, "top_logprobs": 3})
}

async fn answer(body: Value) -> Value {
    let (status, answer) = post_json(vision_server(), "/v1/chat/completions", body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Asserts a 400 in OpenAI's error envelope whose message says `why`.
fn assert_refused(status: u16, body: &Value, why: &str) {
    assert_eq!(status, 400, "{body}");
    let message = assert_envelope(body)["message"].as_str().unwrap();
    assert!(message.contains(why), "{body}");
}

fn first_logprobs(answer: &Value) -> Value {
    answer["choices"][0]["logprobs"]["content"][0].clone()
}

/// The image reaches the model: it adds its image tokens to the prompt, the same picture gives the same
/// distribution, and another picture changes it.
#[tokio::test]
async fn a_vision_model_answers_with_what_the_image_adds() {
    let text_only = answer(ask(&[])).await;
    let red = picture(11, image::ImageFormat::Png);
    let with_image = answer(ask(std::slice::from_ref(&red))).await;
    let prompt = |a: &Value| a["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    assert!(
        prompt(&with_image) >= prompt(&text_only) + IMAGE_SEQ_LEN,
        "image tokens in the prompt: {} vs {}",
        prompt(&with_image),
        prompt(&text_only)
    );
    assert_eq!(with_image["model"], SERVED_NAME);
    assert!(with_image["choices"][0]["message"]["content"].is_string());

    let again = answer(ask(std::slice::from_ref(&red))).await;
    assert_eq!(first_logprobs(&again), first_logprobs(&with_image));
    let other = answer(ask(&[picture(200, image::ImageFormat::Jpeg)])).await;
    assert_ne!(
        first_logprobs(&other),
        first_logprobs(&with_image),
        "another picture, another distribution"
    );

    let two = answer(ask(&[red.clone(), picture(90, image::ImageFormat::Png)])).await;
    assert!(prompt(&two) >= prompt(&text_only) + 2 * IMAGE_SEQ_LEN);
}

#[tokio::test]
async fn an_image_request_streams() {
    let mut body = ask(&[picture(33, image::ImageFormat::Png)]);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (_, raw) = post_sse(vision_server(), "/v1/chat/completions", body).await;
    let events = sse_data(&raw);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{raw}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c.get("error").is_none()), "{raw}");
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() as usize > IMAGE_SEQ_LEN);
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"].is_string()));
}

/// An image whose header passes validation but whose pixels cannot be decoded is a 400 from the engine
/// call, and the server goes on serving.
#[tokio::test]
async fn an_undecodable_image_is_a_400_and_the_server_goes_on() {
    let good = picture(7, image::ImageFormat::Png);
    let bytes = STANDARD.decode(good.split_once(",").unwrap().1).unwrap();
    let truncated = format!(
        "data:image/png;base64,{}",
        STANDARD.encode(&bytes[..bytes.len() * 2 / 3])
    );
    let (status, error) =
        post_json(vision_server(), "/v1/chat/completions", ask(&[truncated])).await;
    assert_refused(status, &error, "could not be decoded");
    let nine = vec![good.clone(); 9];
    let (status, error) = post_json(vision_server(), "/v1/chat/completions", ask(&nine)).await;
    assert_refused(status, &error, "at most 8 images");
    answer(ask(&[good])).await;
}

/// A host serving `/screen.png` (anything else is a 404), as the image store a client links to.
fn image_host(png: Vec<u8>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let mut stream = reader.into_inner();
            if request_line.starts_with("GET /screen.png ") {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    png.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&png).unwrap();
            } else {
                stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .unwrap();
            }
        }
    });
    format!("http://{addr}")
}

/// Remote image URLs are refused by default and fetched when the operator allows it.
#[tokio::test]
async fn remote_images_are_fetched_only_when_allowed() {
    let url = picture(21, image::ImageFormat::Png);
    let png = STANDARD.decode(url.split_once(",").unwrap().1).unwrap();
    let host = image_host(png);
    let remote = format!("{host}/screen.png");

    let (status, error) = post_json(
        vision_server(),
        "/v1/chat/completions",
        ask(std::slice::from_ref(&remote)),
    )
    .await;
    assert_refused(status, &error, "--allow-remote-images");

    let fetching = serve_tiny_model(|config| config.server.allow_remote_images = true);
    let (status, linked) = post_json(
        &fetching,
        "/v1/chat/completions",
        ask(std::slice::from_ref(&remote)),
    )
    .await;
    assert_eq!(status, 200, "{linked}");
    let (_, inline) = post_json(&fetching, "/v1/chat/completions", ask(&[url])).await;
    assert_eq!(
        first_logprobs(&linked),
        first_logprobs(&inline),
        "the fetched image is the one the host serves"
    );
    let (status, error) = post_json(
        &fetching,
        "/v1/chat/completions",
        ask(&[format!("{host}/missing.png")]),
    )
    .await;
    assert_refused(status, &error, "could not be fetched: HTTP 404");
}
