//! The event types the gateway knows and reads nothing from ([`Event::Ignored`](super::event::Event::Ignored)):
//! listed, so that only types nobody has seen are `Unknown` (counted and logged, `relay/reader.rs`).

/// Event types the gateway knows and reads nothing from ([`Event::Ignored`]).
pub(super) const IGNORED_TYPES: &[&str] = &[
    "keepalive",
    "response.in_progress",
    "response.queued",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.done",
    "response.refusal.done",
    "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.done",
    "response.function_call_arguments.done",
    "response.custom_tool_call_input.delta",
    "response.custom_tool_call_input.done",
    "response.web_search_call.in_progress",
    "response.web_search_call.searching",
    "response.web_search_call.completed",
    // Progress of the hosted tools, which end in `output_item.done` (the item carries the result: the image of
    // `image_generation_call`, whose partial images the passthrough forwards), and annotations, which the
    // message item carries too. Types of the public Responses protocol seen in the recordings of
    // `../shared/replay` (issue 59).
    "response.image_generation_call.in_progress",
    "response.image_generation_call.generating",
    "response.image_generation_call.partial_image",
    "response.image_generation_call.completed",
    "response.output_text.annotation.added",
    "response.file_search_call.in_progress",
    "response.file_search_call.searching",
    "response.file_search_call.completed",
    "response.code_interpreter_call.in_progress",
    "response.code_interpreter_call.interpreting",
    "response.code_interpreter_call.completed",
    "response.code_interpreter_call_code.delta",
    "response.code_interpreter_call_code.done",
    "response.mcp_call.in_progress",
    "response.mcp_call.completed",
    "response.mcp_call.failed",
    "response.mcp_call_arguments.delta",
    "response.mcp_call_arguments.done",
    "response.mcp_list_tools.in_progress",
    "response.mcp_list_tools.completed",
    "response.mcp_list_tools.failed",
    "response.apply_patch_call_operation_diff.delta",
    "response.apply_patch_call_operation_diff.done",
    "response.shell_call_command.added",
    "response.shell_call_command.delta",
    "response.shell_call_command.done",
    // Raw reasoning text: only other providers' open models send it (the Codex backend sends summaries).
    "response.reasoning_text.delta",
    "response.reasoning_text.done",
];
