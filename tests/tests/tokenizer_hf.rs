//! Hugging Face tokenizers and chat templates: the tiny fixtures' reference
//! ids, SmolLM2's ChatML template, and hostile templates.

use std::time::{Duration, Instant};

use asdsl_model::chat::{ChatError, ChatMessage, ChatTemplate};
use asdsl_model::gguf::Gguf;
use asdsl_model::tokenizer::{Tokenizer, TokenizerError};
use serde_json::Value as Json;

#[test]
fn hf_tokenizers_give_reference_ids() {
    let Some(shared) = asdsl_tests::shared_dir() else { return };
    for name in ["llama-tiny", "qwen2-tiny", "phi3-tiny"] {
        let folder = shared.join("fixtures/hf").join(name);
        let tok = Tokenizer::from_hf_folder(&folder).unwrap();
        let reference: Json =
            serde_json::from_str(&std::fs::read_to_string(folder.join("reference.json")).unwrap()).unwrap();
        let prompt = reference["prompt"].as_str().unwrap();
        let expected: Vec<u32> =
            reference["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.encode(prompt, true).unwrap(), expected, "{name}");
        assert_eq!(tok.bos(), Some(1));
        assert!(tok.add_bos());
        assert!(tok.eos_ids().contains(&0), "{name}");
        assert_eq!(tok.vocab_size(), 512);
        assert_eq!(tok.decode_with(&expected, true).unwrap(), prompt);
        assert_eq!(tok.decode(&expected).unwrap(), format!("<|bos|>{prompt}"));
        assert_eq!(tok.encode_with(prompt, false, true).unwrap(), expected[1..]);
        // special tokens parsed or not
        assert_eq!(tok.encode_with("<|endoftext|>", false, true).unwrap(), vec![0]);
        assert_ne!(tok.encode_with("<|endoftext|>", false, false).unwrap(), vec![0]);
        // streaming the greedy continuation gives the whole decode
        let new_ids: Vec<u32> =
            reference["greedy_new_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let mut stream = tok.stream_decoder();
        let mut text = String::new();
        for &id in &new_ids {
            text.push_str(&stream.push(id).unwrap());
        }
        text.push_str(&stream.finish());
        assert_eq!(text, tok.decode_with(&new_ids, true).unwrap(), "{name}");
        assert!(matches!(tok.decode(&[512]), Err(TokenizerError::UnknownId { .. })));
    }
}

#[test]
fn hf_folder_errors() {
    let dir = std::env::temp_dir().join(format!("asdsl-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(matches!(Tokenizer::from_hf_folder(&dir), Err(TokenizerError::Hf { .. })));
    std::fs::write(dir.join("tokenizer.json"), "{ not json").unwrap();
    assert!(matches!(Tokenizer::from_hf_folder(&dir), Err(TokenizerError::Hf { .. })));
    if let Some(shared) = asdsl_tests::shared_dir() {
        std::fs::copy(shared.join("fixtures/hf/llama-tiny/tokenizer.json"), dir.join("tokenizer.json")).unwrap();
        std::fs::write(dir.join("tokenizer_config.json"), "[1, 2").unwrap();
        assert!(matches!(Tokenizer::from_hf_folder(&dir), Err(TokenizerError::Json { .. })));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

const SMOLLM2_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

#[test]
fn smollm2_chat_template_renders_chatml() {
    let Some(shared) = asdsl_tests::shared_dir() else { return };
    let bytes = std::fs::read(shared.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let gguf = Gguf::parse(&bytes).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let template = ChatTemplate::from_gguf(&gguf, &tok).unwrap();
    let text = template.render_prompt(None, "What is 12 times 7?").unwrap();
    assert_eq!(
        text,
        format!(
            "<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n<|im_start|>user\nWhat is 12 times 7?<|im_end|>\n<|im_start|>assistant\n"
        )
    );
    let with_system = template.render_prompt(Some("Be brief."), "Hi").unwrap();
    assert_eq!(
        with_system,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let no_prompt = template.render(&[ChatMessage::new("user", "Hi")], false).unwrap();
    assert!(no_prompt.ends_with("<|im_end|>\n"));
    // the rendered prompt tokenizes with the chat markers as single tokens
    let ids = tok.encode(&with_system, true).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(ids.iter().filter(|&&id| id == 2).count(), 2);
}

fn render(source: &str) -> Result<String, ChatError> {
    ChatTemplate::new(source, Some("<s>".into()), Some("</s>".into())).render_prompt(Some("sys"), "hello")
}

#[test]
fn template_features_used_by_real_models() {
    assert_eq!(render("{{ bos_token }}{{ messages[1].content }}{{ eos_token }}").unwrap(), "<s>hello</s>");
    assert_eq!(render("{{ messages[1]['content'].strip().upper() }}").unwrap(), "HELLO");
    assert_eq!(render("{% if add_generation_prompt %}gen{% endif %}").unwrap(), "gen");
    assert_eq!(render("{{ messages | length }}{{ messages[0].role | tojson }}").unwrap(), "2\"system\"");
    assert_eq!(render("{{ ' x '.lstrip() }}|{{ 'a b'.split(' ') | join(',') }}").unwrap(), "x |a,b");
    let err =
        render("{% if messages[0].role == 'system' %}{{ raise_exception('no system role') }}{% endif %}").unwrap_err();
    assert!(matches!(&err, ChatError::Template(m) if m.contains("no system role")), "{err}");
    assert!(matches!(render("{% for %}"), Err(ChatError::Template(_))));
    assert!(matches!(render("{{ undefined_function() }}"), Err(ChatError::Template(_))));
}

#[test]
fn hostile_templates_end_in_bounded_time() {
    let hostile = [
        // nested loops: ten billion iterations without fuel
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        // unbounded recursion
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        // output explosion
        "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
        // recursive loop over a self-similar structure
        "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    ];
    for source in hostile {
        let start = Instant::now();
        let result = render(source);
        assert!(result.is_err(), "{source}: {:?}", result.map(|s| s.len()));
        assert!(start.elapsed() < Duration::from_secs(20), "{source} took {:?}", start.elapsed());
    }
    let mut capped = ChatTemplate::new("{% for i in range(1000) %}0123456789{% endfor %}", None, None);
    capped.max_output = 5000;
    assert!(matches!(capped.render(&[], false), Err(ChatError::OutputTooLarge(5000))));
    capped.max_output = 10_000;
    assert_eq!(capped.render(&[], false).unwrap().len(), 10_000);
}
