//! Properties of the grammar API: trie-walked masks equal a per-token brute force over the automaton,
//! rollback restores masks, and the parsers of tokenizer files and regexes refuse garbage without
//! panicking.

use std::sync::Arc;

use decodekit_core::grammar::bitmask::allowed_ids;
use decodekit_core::grammar::{EosChoice, Grammar, Matcher, RegexLimits, TokenKind, Vocabulary};
use proptest::prelude::*;

fn regex_strategy() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("[ab]".to_string()),
        Just(".".to_string()),
        Just("é".to_string()),
        Just("[^b]".to_string()),
    ];
    atom.prop_recursive(4, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("(?:{x}{y})")),
            (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("(?:{x}|{y})")),
            (inner, prop_oneof![Just("*"), Just("+"), Just("?"), Just("{1,3}")])
                .prop_map(|(x, q)| format!("(?:{x}){q}")),
        ]
    })
}

fn vocab_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let byte = prop_oneof![Just(b'a'), Just(b'b'), Just(b'c'), Just(0xC3u8), Just(0xA9u8)];
    prop::collection::vec(prop::collection::vec(byte, 0..4), 1..40)
}

proptest! {
    #[test]
    fn masks_equal_the_per_token_brute_force(
        pattern in regex_strategy(),
        tokens in vocab_strategy(),
        walk in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut list: Vec<Option<Vec<u8>>> = tokens.iter().cloned().map(Some).collect();
        list.push(Some(b"</s>".to_vec()));
        let eos = list.len() as u32 - 1;
        let vocab = Arc::new(Vocabulary::new(&list, &[], &[eos], Some(list.len() + 5)).unwrap());
        let grammar = Grammar::regex(&pattern, RegexLimits::default()).unwrap();
        let compiled = Arc::new(grammar.compile(Arc::clone(&vocab), Some(false)).unwrap());
        let mut matcher = Matcher::new(Arc::clone(&compiled));
        let dfa = compiled.dfa().unwrap();
        let mut state = dfa.start();
        let mut history = Vec::new();
        for pick in walk.iter().map(Some).chain([None]) {
            let mut row = vec![0u32; vocab.mask_words()];
            matcher.fill_next_token_bitmask(&mut row);
            let expected: Vec<u32> = (0..vocab.size() as u32)
                .filter(|&id| {
                    if vocab.is_eos(id) {
                        return dfa.is_accepting(state);
                    }
                    let bytes = vocab.token_bytes(id as usize);
                    vocab.kind(id as usize) == TokenKind::Normal && !bytes.is_empty() && dfa.run(state, bytes) != 0
                })
                .collect();
            prop_assert_eq!(allowed_ids(&row), expected.clone(), "pattern {}", pattern);
            history.push(row);
            let Some(pick) = pick else { break };
            let normal: Vec<u32> = expected.into_iter().filter(|&id| !vocab.is_eos(id)).collect();
            if normal.is_empty() {
                break;
            }
            let id = normal[pick.index(normal.len())];
            prop_assert!(matcher.accept_token(id).unwrap());
            state = dfa.run(state, vocab.token_bytes(id as usize));
        }
        // Rolling all the way back restores the first mask.
        matcher.rollback(matcher.num_tokens()).unwrap();
        let mut row = vec![0u32; vocab.mask_words()];
        matcher.fill_next_token_bitmask(&mut row);
        prop_assert_eq!(&row, &history[0]);
    }

    #[test]
    fn parsers_refuse_garbage_without_panicking(text in ".{0,200}", bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Vocabulary::from_tokenizer_json(&text, &EosChoice::Guess, None);
        let _ = Vocabulary::from_tiktoken(&bytes, &[("<|endoftext|>".into(), 7)], &EosChoice::Guess, None);
        let limits = RegexLimits { max_automaton_bytes: 1 << 20, max_states: 1000 };
        let _ = Grammar::regex(&text, limits);
    }

    #[test]
    fn tokenizer_json_shapes_refuse_cleanly(
        vocab in prop::collection::vec(("[a-zĠ▁<>0-9x]{0,6}", 0u64..50), 0..20),
        added in prop::collection::vec((0u64..60, "[<>a-z|/]{0,8}", any::<bool>()), 0..6),
        byte_level in any::<bool>(),
    ) {
        let vocab_json: serde_json::Map<String, serde_json::Value> =
            vocab.into_iter().map(|(k, v)| (k, serde_json::Value::from(v))).collect();
        let added_json: Vec<serde_json::Value> = added
            .into_iter()
            .map(|(id, content, special)| serde_json::json!({"id": id, "content": content, "special": special}))
            .collect();
        let decoder = if byte_level { serde_json::json!({"type": "ByteLevel"}) } else { serde_json::json!({"type": "Metaspace"}) };
        let doc = serde_json::json!({"model": {"type": "BPE", "vocab": vocab_json, "byte_fallback": true}, "added_tokens": added_json, "decoder": decoder});
        if let Ok(v) = Vocabulary::from_tokenizer_json(&doc.to_string(), &EosChoice::Ids(vec![]), None) {
            prop_assert!(v.num_tokens() <= 60);
            prop_assert!(v.trie().num_nodes() >= 1);
        }
    }
}
