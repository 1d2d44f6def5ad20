//! Files of `asdsl quantize` (`asdsl_model::quantized`): a Hugging Face
//! fixture quantized once, written, and loaded back by mmap runs exactly
//! like the same folder quantized at load (the same blocks, packed for the
//! same variants, give bit-identical logits), carries the folder's tokenizer
//! and chat template, and a damaged file is a clear error.

use std::path::{Path, PathBuf};

use asdsl_model::quantized::{QuantizedCheckpoint, QuantizedFile};
use asdsl_model::tokenizer::Tokenizer;
use asdsl_model::{Exec, LoadOptions, Model, QuantSpec};

const FIXTURES: [&str; 3] = ["llama-tiny", "qwen2-tiny", "phi3-tiny"];

/// f32; the default mix; a GGUF format; a native format whose groups do not
/// divide every row (192 and 320 wide rows, groups of 128: padded rows).
const QUANTS: [&str; 4] = ["f32", "q4_k_m", "q8_0", "q4g128"];

fn fixture(name: &str) -> Option<PathBuf> {
    let dir = asdsl_tests::shared_dir()?.join("fixtures/hf").join(name);
    dir.is_dir().then_some(dir)
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("quantized-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn logits(model: &Model, ids: &[u32]) -> Vec<f32> {
    let exec = Exec::new(1).unwrap();
    let mut state = model.new_state(64, 4).unwrap();
    model.forward_all(&mut state, ids, &exec).unwrap()
}

fn options(quant: QuantSpec) -> LoadOptions<'static> {
    LoadOptions { quant, threads: 1, ..LoadOptions::default() }
}

fn write(dir: &Path, quant: QuantSpec, file: &Path) {
    QuantizedCheckpoint::from_hf(dir, quant, None).unwrap().write(file).unwrap();
}

#[test]
fn quantized_file_runs_like_quantize_at_load() {
    let ids = [1u32, 17, 99, 250, 3, 411, 12, 7];
    for name in FIXTURES {
        let Some(dir) = fixture(name) else { return };
        let out = scratch(name);
        for quant in QUANTS {
            let spec: QuantSpec = quant.parse().unwrap();
            let file = out.join(format!("{quant}.safetensors"));
            write(&dir, spec, &file);
            let at_load = Model::load_hf(&dir, &options(spec)).unwrap();
            let from_file = Model::load(&file, &options(QuantSpec::F32)).unwrap();
            assert_eq!(from_file.info.formats, at_load.info.formats, "{name} {quant}: formats");
            assert_eq!(from_file.info.variants, at_load.info.variants, "{name} {quant}: variants");
            assert_eq!(from_file.parameters(), at_load.parameters(), "{name} {quant}: parameters");
            let (a, b) = (logits(&at_load, &ids), logits(&from_file, &ids));
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{name} {quant}: logits differ");
        }
    }
}

#[test]
fn quantized_file_carries_the_tokenizer_and_chat_template() {
    let Some(dir) = fixture("qwen2-tiny") else { return };
    let file = scratch("tokenizer").join("q8_0.safetensors");
    write(&dir, QuantSpec::Uniform("q8_0".parse().unwrap()), &file);
    let files = QuantizedFile::open(&file).unwrap().tokenizer_files().expect("the folder has a tokenizer");
    let from_file = Tokenizer::from_hf_files(&files, "file").unwrap();
    let from_folder = Tokenizer::from_hf_folder(&dir).unwrap();
    for text in ["Hello, world!", "  spaces\tand\nnewlines ", "<|im_start|>user\nhi<|im_end|>", "ünïcödé 日本"] {
        for special in [false, true] {
            assert_eq!(from_file.encode(text, special).unwrap(), from_folder.encode(text, special).unwrap(), "{text}");
        }
    }
    let (Tokenizer::Hf(a), Tokenizer::Hf(b)) = (&from_file, &from_folder) else { panic!("HF tokenizers") };
    assert_eq!(a.chat_template(), b.chat_template());
    assert_eq!((a.bos(), a.eos(), a.add_bos()), (b.bos(), b.eos(), b.add_bos()));
    let config = QuantizedFile::open(&file).unwrap().config().unwrap();
    assert_eq!(
        config.eos_token_ids,
        asdsl_model::ModelConfig::from_hf_file(&dir.join("config.json")).unwrap().eos_token_ids
    );
}

/// Rewrites the JSON header of a safetensors file with `edit`.
fn edit_header(bytes: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn damaged_quantized_files_are_clear_errors() {
    let Some(dir) = fixture("llama-tiny") else { return };
    let out = scratch("damaged");
    let good = out.join("good.safetensors");
    write(&dir, QuantSpec::Q4KM, &good);
    let bytes = std::fs::read(&good).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let load = |name: &str, content: &[u8]| -> String {
        let path = out.join(name);
        std::fs::write(&path, content).unwrap();
        match Model::load(&path, &options(QuantSpec::F32)) {
            Ok(_) => panic!("{name}: loaded"),
            Err(e) => {
                let message = format!("{e}");
                eprintln!("{name}: {message}");
                message
            }
        }
    };
    let metadata = |key: &'static str, value: &'static str| {
        move |h: &mut serde_json::Value| h["__metadata__"][key] = serde_json::Value::from(value)
    };
    // Truncated in the header and in the data.
    for cut in [12, 8 + n / 2, 8 + n + 100, bytes.len() - 1] {
        let message = load(&format!("cut-{cut}.safetensors"), &bytes[..cut]);
        assert!(message.contains(&format!("cut-{cut}.safetensors")), "{message}");
    }
    // A plain checkpoint is not a quantized file.
    let plain = std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(load("plain.safetensors", &plain).contains("not one written by `asdsl quantize`"));
    // Another version of the format.
    let message = load("version.safetensors", &edit_header(&bytes, metadata("asdsl.version", "99")));
    assert!(message.contains("file version 99"), "{message}");
    // The matrix table gives `layers.0.o` a format the blocks do not have
    // the size of, or one that does not exist.
    let matrix_format = |format: &'static str| {
        move |h: &mut serde_json::Value| {
            let text = h["__metadata__"]["asdsl.matrices"].as_str().unwrap().to_string();
            let mut matrices: serde_json::Value = serde_json::from_str(&text).unwrap();
            matrices["layers.0.o"]["format"] = serde_json::Value::from(format);
            h["__metadata__"]["asdsl.matrices"] = serde_json::Value::from(matrices.to_string());
        }
    };
    let message = load("format.safetensors", &edit_header(&bytes, matrix_format("q8_0")));
    assert!(message.contains("layers.0.o"), "{message}");
    let message = load("unknown.safetensors", &edit_header(&bytes, matrix_format("q9_z")));
    assert!(message.contains("q9_z"), "{message}");
    // No config.
    let message = load(
        "config.safetensors",
        &edit_header(&bytes, |h| {
            h["__metadata__"].as_object_mut().unwrap().remove("asdsl.config.json");
        }),
    );
    assert!(message.contains("asdsl.config.json"), "{message}");
    // A missing tensor.
    let message = load(
        "missing.safetensors",
        &edit_header(&bytes, |h| {
            let offsets = h["layers.1.down"]["data_offsets"].clone();
            h.as_object_mut().unwrap().remove("layers.1.down");
            // keep the data contiguous for the header check: give the bytes to a dummy tensor
            h["padding"] = serde_json::json!({"dtype": "U8", "shape": [offsets[1].as_u64().unwrap() - offsets[0].as_u64().unwrap()], "data_offsets": offsets});
        }),
    );
    assert!(message.contains("layers.1.down"), "{message}");
}
