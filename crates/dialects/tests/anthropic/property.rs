//! Property: whatever the upstream sends, the stream satisfies the accumulator invariants.

use super::support::*;

// property: whatever the upstream sends, the stream satisfies the accumulator invariants

#[derive(Debug, Clone)]
enum GenItem {
    Reasoning { parts: Vec<String>, ec: Option<String> },
    Text(String),
    Call { args: Value, stream_args: bool },
    Search(String),
}

#[derive(Debug, Clone)]
enum GenEnd {
    Completed,
    Incomplete(&'static str),
    Failed,
    StopSeq,
    CutMidway,
}

fn gen_item() -> impl Strategy<Value = GenItem> {
    let text = "[a-zé \\n\"{}]{0,12}";
    prop_oneof![
        (prop::collection::vec(text, 0..3), prop::option::of("[A-Za-z0-9+/=]{1,8}"))
            .prop_map(|(parts, ec)| GenItem::Reasoning { parts, ec }),
        text.prop_map(GenItem::Text),
        (prop::collection::btree_map("[a-z]{1,3}", "[a-z\"{ ]{0,5}", 0..3), any::<bool>())
            .prop_map(|(m, stream_args)| { GenItem::Call { args: json!(m), stream_args } }),
        "[a-z ]{0,8}".prop_map(GenItem::Search),
    ]
}

fn gen_end() -> impl Strategy<Value = GenEnd> {
    prop_oneof![
        Just(GenEnd::Completed),
        Just(GenEnd::Incomplete("max_output_tokens")),
        Just(GenEnd::Incomplete("content_filter")),
        Just(GenEnd::Failed),
        Just(GenEnd::StopSeq),
        Just(GenEnd::CutMidway),
    ]
}

/// Split `s` into pieces at char boundaries chosen by `cuts`.
fn split(s: &str, cuts: &[usize]) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
    points.push(0);
    points.push(chars.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| chars[w[0]..w[1]].iter().collect()).collect()
}

/// The upstream events for `items`. With `order`, the items' events are interleaved (each item keeps its own
/// order; a function call stays contiguous, as the Responses protocol streams one item at a time and a
/// tool_use block cannot be reopened).
fn build_events(
    items: &[GenItem],
    cuts: &[usize],
    end: &GenEnd,
    noise: bool,
    order: Option<&[usize]>,
) -> Vec<Event<'static>> {
    let mut ev = vec![Event::Created { response_id: "resp".into(), model: None }];
    let mut chunks: Vec<Vec<Vec<Event>>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let oi = i as u32;
        let mut it: Vec<Event> = Vec::new();
        if noise {
            it.push(Event::Ignored);
        }
        match item {
            GenItem::Reasoning { parts, ec } => {
                let id = format!("rs_{i}");
                it.push(Event::ItemAdded { output_index: oi, item: ItemStart::Reasoning { id: id.clone() } });
                for (k, p) in parts.iter().enumerate() {
                    it.push(Event::ReasoningSummaryPartAdded { item_id: id.clone(), summary_index: k as u32 });
                    for piece in split(p, cuts) {
                        it.push(Event::ReasoningSummaryDelta {
                            item_id: id.clone().into(),
                            summary_index: k as u32,
                            delta: piece.into(),
                        });
                    }
                }
                it.push(Event::ItemDone {
                    output_index: oi,
                    item: DoneItem::Reasoning { id, summary: parts.clone(), encrypted_content: ec.clone() },
                });
            }
            GenItem::Text(t) => {
                let id = format!("msg_{i}");
                it.push(Event::ItemAdded { output_index: oi, item: ItemStart::Message { id: id.clone() } });
                for piece in split(t, cuts) {
                    it.push(text_delta(&id, &piece));
                }
                it.push(Event::ItemDone {
                    output_index: oi,
                    item: DoneItem::Message { id, text: t.clone(), refusal: None },
                });
            }
            GenItem::Call { args, stream_args } => {
                let id = format!("fc_{i}");
                let call_id = format!("call_{i}");
                let arguments = args.to_string();
                it.push(Event::ItemAdded {
                    output_index: oi,
                    item: ItemStart::FunctionCall { id: id.clone(), call_id: call_id.clone(), name: "tool".into() },
                });
                if *stream_args {
                    for piece in split(&arguments, cuts) {
                        it.push(Event::FunctionArgsDelta { item_id: id.clone().into(), delta: piece.into() });
                    }
                }
                it.push(Event::ItemDone {
                    output_index: oi,
                    item: DoneItem::FunctionCall { id, call_id, name: "tool".into(), arguments },
                });
            }
            GenItem::Search(q) => {
                let id = format!("ws_{i}");
                it.push(Event::ItemAdded {
                    output_index: oi,
                    item: ItemStart::Other { id: id.clone(), kind: "web_search_call".into() },
                });
                it.push(Event::ItemDone {
                    output_index: oi,
                    item: DoneItem::WebSearchCall {
                        id,
                        query: Some(q.clone()),
                        sources: vec![json!({"url":"https://a.b"})],
                    },
                });
            }
        }
        let atomic = matches!(item, GenItem::Call { .. }) || order.is_none();
        chunks.push(if atomic { vec![it] } else { it.into_iter().map(|e| vec![e]).collect() });
    }
    let mut queues: Vec<std::collections::VecDeque<Vec<Event>>> = chunks.into_iter().map(Into::into).collect();
    let mut k = 0;
    while queues.iter().any(|q| !q.is_empty()) {
        let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
        let pick = match order {
            Some(o) if !o.is_empty() => live[o[k % o.len()] % live.len()],
            _ => live[0],
        };
        k += 1;
        if let Some(chunk) = queues[pick].pop_front() {
            ev.extend(chunk);
        }
    }
    let u = usage(100, 10, 50);
    match end {
        GenEnd::Completed => ev.push(completed(u)),
        GenEnd::Incomplete(r) => ev.push(Event::Finished {
            terminal: Terminal::Incomplete { reason: (*r).into() },
            usage: u,
            output: vec![],
        }),
        GenEnd::Failed => ev.push(Event::failed(Some("server_is_overloaded".into()), "busy".into())),
        GenEnd::StopSeq => ev.push(Event::Finished {
            terminal: Terminal::Cut(Finish::StopSequence("X".into())),
            usage: u,
            output: vec![],
        }),
        GenEnd::CutMidway => {
            // The upstream dies in the middle of an item: keep a prefix, then fail.
            let keep = cuts.first().copied().unwrap_or(0) % ev.len().max(1);
            ev.truncate(keep.max(1));
            ev.push(Event::failed(None, "stream cut".into()));
        }
    }
    ev
}

proptest! {
    // 400 cases by default (~0.2 s); PROPTEST_CASES=N for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn encoder_output_satisfies_the_accumulator_invariants(
        items in prop::collection::vec(gen_item(), 0..6),
        cuts in prop::collection::vec(0usize..40, 0..5),
        end in gen_end(),
        include_thinking in any::<bool>(),
        noise in any::<bool>(),
        pings in prop::collection::vec(0usize..60, 0..3),
        order in prop::option::of(prop::collection::vec(0usize..8, 1..12)),
    ) {
        let events = build_events(&items, &cuts, &end, noise, order.as_deref());
        let mut enc = AnthropicEncoder::new("msg_p".into(), "claude-sonnet-4-5".into(), &AnthropicOptions { include_thinking }, 7);
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if pings.contains(&i) && i > 0 {
                AnthropicEncoder::ping(&mut out);
            }
            enc.on_event(e, &mut out);
        }
        prop_assert!(enc.is_finished());
        let blocks = match check_stream(&out) {
            Ok(b) => b,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&out)))),
        };
        if matches!(end, GenEnd::Completed | GenEnd::Incomplete(_) | GenEnd::StopSeq) {
            // Every call came through as exactly one tool_use block with the arguments it had.
            let calls: Vec<&Value> = items.iter().filter_map(|i| match i { GenItem::Call { args, .. } => Some(args), _ => None }).collect();
            let tool_inputs: Vec<Value> = blocks.iter().filter(|b| b.kind == "tool_use")
                .map(|b| serde_json::from_str(&b.json).unwrap_or(Value::Null)).collect();
            let mut expected: Vec<Value> = calls.into_iter().cloned().collect();
            let mut tool_inputs = tool_inputs;
            if order.is_some() {
                // Interleaving may reorder whole calls.
                expected.sort_by_key(Value::to_string);
                tool_inputs.sort_by_key(Value::to_string);
            }
            prop_assert_eq!(tool_inputs, expected);
            let thinking = blocks.iter().filter(|b| b.kind == "thinking").count();
            let thinking = if order.is_some() { thinking.min(1) } else { thinking };
            let expected_thinking = if include_thinking {
                items.iter().filter(|i| matches!(i, GenItem::Reasoning { parts, ec } if ec.is_some() || parts.iter().any(|p| !p.is_empty()))).count()
            } else { 0 };
            let expected_thinking = if order.is_some() { expected_thinking.min(1) } else { expected_thinking };
            prop_assert_eq!(thinking, expected_thinking);
            let text = String::from_utf8_lossy(&out);
            let any_call = items.iter().any(|i| matches!(i, GenItem::Call { .. }));
            let expected_reason = match &end {
                GenEnd::Completed if any_call => "tool_use",
                GenEnd::Completed => "end_turn",
                GenEnd::Incomplete("content_filter") => "refusal",
                GenEnd::Incomplete(_) => "max_tokens",
                _ => "stop_sequence",
            };
            let needle = format!("\"stop_reason\":\"{expected_reason}\"");
            prop_assert!(text.contains(&needle));
        }
    }
}
