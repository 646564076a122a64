//! Tool calling in our own layer: tools described in the prompt, calls parsed from `<tool_call>` blocks
//! (the Hermes/Qwen format), and `required` or a named function enforced by a grammar.
//!
//! mistral.rs 0.8.1 parses tool calls only for model families it knows, and never enforces `tool_choice`.
//! Doing it here gives every model the same wire behaviour, and a grammar makes even a 135M model produce
//! a call that parses and matches the function's parameter schema. [`prompt`] puts the tools (and earlier
//! calls) into the prompt and writes the grammar; [`parser`] finds the calls in what the model writes.

pub mod parser;
pub mod prompt;

pub use parser::{parse_complete, ToolCallParser, ToolEvent, CALL_CLOSE, CALL_OPEN};
pub use prompt::{render_calls, setup, FunctionTool, ToolChoice, ToolSetup, MAX_TOOLS};
