//! Compiles the gRPC front's `.proto`, and refuses to build against engine sources patched with an older set
//! of `patches/`.
//!
//! The `.proto` is parsed in Rust (protox), so no `protoc` is needed; the encoded descriptors are kept for
//! gRPC server reflection.
//!
//! `scripts/patch-engine.sh` applies `patches/<crate>-<version>/*.patch` to the crates.io sources and keeps a
//! copy of what it applied. Cargo's `[patch.crates-io]` cannot see whether that copy is current, so this
//! check does: a changed, added or removed patch without a rerun of the script would otherwise build the old
//! engine silently.

use std::fs;
use std::path::Path;

const PATCHED_DIR: &str = ".patched-by-scripts-patch-engine.sh";

fn patch_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "patch"))
                .map(|path| {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    (name, fs::read(&path).unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

const PROTO: &str = "proto/llmserve/v1/llmserve.proto";

fn compile_proto() {
    println!("cargo:rerun-if-changed=proto");
    let descriptors =
        protox::compile([PROTO], ["proto"]).unwrap_or_else(|e| panic!("{PROTO}: {e}"));
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let encoded = prost::Message::encode_to_vec(&descriptors);
    fs::write(out.join("llmserve_descriptor.bin"), encoded).expect("OUT_DIR is writable");
    tonic_prost_build::configure()
        .build_client(false)
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("{PROTO}: {e}"));
}

fn main() {
    compile_proto();
    check_patches();
}

fn check_patches() {
    println!("cargo:rerun-if-changed=patches");
    let Ok(crates) = fs::read_dir("patches") else {
        return;
    };
    for entry in crates.filter_map(Result::ok) {
        if !entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let applied = Path::new(PATCHED_DIR).join(&name);
        println!(
            "cargo:rerun-if-changed={}",
            applied.join(".llmserve-stamp").display()
        );
        if patch_files(&entry.path()) != patch_files(&applied.join(".llmserve-patches")) {
            panic!(
                "the engine patches in patches/{name}/ differ from those applied in {PATCHED_DIR}/{name}/: \
                 run scripts/patch-engine.sh"
            );
        }
    }
}
