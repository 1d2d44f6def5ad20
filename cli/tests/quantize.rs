//! `asdsl quantize` end to end: a Hugging Face fixture quantized to a file,
//! then `generate -m FILE` gives what `generate -m FOLDER --quant` gives,
//! with the folder's tokenizer and chat template; bad inputs are clear errors.

mod common;

use std::path::PathBuf;

use common::{asdsl, json_of, scratch, stderr};

fn fixture(name: &str) -> Option<PathBuf> {
    let dir = asdsl_tests::shared_dir()?.join("fixtures/hf").join(name);
    dir.is_dir().then_some(dir)
}

/// ChatML, for a copy of a fixture (the fixtures have no chat template).
const CHAT_TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
    {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

#[test]
fn quantized_file_generates_like_the_folder() {
    let Some(fixture) = fixture("qwen2-tiny") else { return };
    let cache = scratch("quantize");
    // The fixture with a chat template beside it.
    let dir = cache.join("qwen2-tiny");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.join("chat_template.jinja"), CHAT_TEMPLATE).unwrap();
    let file = cache.join("qwen2-q4_k_m.safetensors");
    let (d, f) = (dir.to_str().unwrap(), file.to_str().unwrap());
    let out = asdsl(&cache, &["quantize", d, "-o", f, "--quant", "q4_k_m", "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrote") && stderr(&out).contains("with its tokenizer"), "{}", stderr(&out));
    let mut prompt_lengths = Vec::new();
    for chat in [false, true] {
        let mut args =
            vec!["generate", "-p", "Hello there", "-n", "8", "--greedy", "--ignore-eos", "--json", "-t", "1"];
        if chat {
            args.push("--chat");
        }
        let from_folder = json_of(&asdsl(&cache, &[&args[..], &["-m", d, "--quant", "q4_k_m"]].concat()));
        let from_file = json_of(&asdsl(&cache, &[&args[..], &["-m", f]].concat()));
        assert_eq!(from_file["prompt_ids"], from_folder["prompt_ids"], "chat {chat}: prompt ids");
        assert_eq!(from_file["generated_ids"], from_folder["generated_ids"], "chat {chat}: generated ids");
        assert_eq!(from_file["text"], from_folder["text"], "chat {chat}: text");
        prompt_lengths.push(from_file["prompt_ids"].as_array().unwrap().len());
    }
    assert!(prompt_lengths[1] > prompt_lengths[0] + 4, "the chat template wraps the prompt: {prompt_lengths:?}");
}

#[test]
fn quantize_refuses_what_it_cannot_read() {
    let cache = scratch("quantize-bad");
    let out_file = cache.join("out.safetensors");
    let o = out_file.to_str().unwrap();
    // Not a folder.
    let not_folder = cache.join("model.gguf");
    std::fs::write(&not_folder, b"GGUF....").unwrap();
    let out = asdsl(&cache, &["quantize", not_folder.to_str().unwrap(), "-o", o]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a Hugging Face model folder"), "{}", stderr(&out));
    // A folder without config.json.
    let empty = cache.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = asdsl(&cache, &["quantize", empty.to_str().unwrap(), "-o", o]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
    // An unknown --quant.
    let Some(dir) = fixture("llama-tiny") else { return };
    let out = asdsl(&cache, &["quantize", dir.to_str().unwrap(), "-o", o, "--quant", "q7_x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("q7_x"), "{}", stderr(&out));
    assert!(!out_file.exists(), "nothing written on failure");
}
