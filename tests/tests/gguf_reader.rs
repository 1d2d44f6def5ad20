//! The GGUF reader and writer: the real SmolLM2 file, synthetic round trips,
//! and a corpus of malformed files, each of which must give a specific
//! error (never a panic).

use asdsl_model::gguf::{Array, GgmlType, Gguf, GgufError, GgufHeader, GgufWriter, Value};
use asdsl_model::kernels::Format;

const SMOLLM2: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

fn real_model() -> Option<Vec<u8>> {
    let path = asdsl_tests::shared_dir()?.join(SMOLLM2);
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn real_model_parses_with_sane_tensors() {
    let Some(bytes) = real_model() else { return };
    let gguf = Gguf::parse(&bytes).expect("SmolLM2 parses");
    assert_eq!(gguf.version, 3);
    assert_eq!(gguf.alignment, 32);
    assert_eq!(gguf.metadata().len(), 33);
    assert_eq!(gguf.tensors().len(), 272);
    assert_eq!(gguf.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(gguf.get_u32("llama.block_count").unwrap(), Some(30));
    assert_eq!(gguf.get_u32("llama.embedding_length").unwrap(), Some(576));
    assert_eq!(gguf.get_f32("llama.rope.freq_base").unwrap(), Some(100000.0));
    assert_eq!(gguf.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap().len(), 49152);
    assert_eq!(gguf.get_i32_array("tokenizer.ggml.token_type").unwrap().unwrap().len(), 49152);
    assert_eq!(gguf.get_bool("tokenizer.ggml.add_bos_token").unwrap(), Some(false));
    // typed accessors refuse other types
    assert!(matches!(gguf.get_str("llama.block_count"), Err(GgufError::WrongType { .. })));
    assert!(matches!(gguf.get_u32("general.architecture"), Err(GgufError::WrongType { .. })));
    assert!(matches!(gguf.get_i32_array("tokenizer.ggml.tokens"), Err(GgufError::WrongType { .. })));
    assert!(matches!(gguf.require_u32("no.such.key"), Err(GgufError::MissingKey { .. })));

    let embd = gguf.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dims, vec![576, 49152]);
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
    assert_eq!((embd.cols(), embd.rows()), (576, 49152));
    assert_eq!(embd.format(), Some(Format::Q8_0));
    let q = gguf.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.ggml_type, GgmlType::Q4_1);
    assert_eq!(q.dims, vec![576, 576]);
    let k = gguf.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(k.dims, vec![576, 192]);
    for t in gguf.tensors() {
        assert!(matches!(t.ggml_type, GgmlType::F32 | GgmlType::Q4_1 | GgmlType::Q8_0), "{}", t.name);
        let data = gguf.tensor_bytes(t);
        assert_eq!(data.len() as u64, t.n_bytes, "{}", t.name);
        if let Some(format) = t.format() {
            let row = format.row_bytes(t.cols() as usize).unwrap();
            assert_eq!(row as u64 * t.rows(), t.n_bytes, "{}", t.name);
        }
    }
    // the norms are finite f32
    let norm = gguf.tensor("blk.0.attn_norm.weight").unwrap();
    let values: Vec<f32> =
        gguf.tensor_bytes(norm).chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(values.len(), 576);
    assert!(values.iter().all(|v| v.is_finite()));
}

#[test]
fn writer_reproduces_the_real_model_byte_for_byte() {
    let Some(bytes) = real_model() else { return };
    let gguf = Gguf::parse(&bytes).unwrap();
    let mut w = GgufWriter::new();
    for (key, value) in gguf.metadata() {
        w.metadata(key.clone(), value.clone()).unwrap();
    }
    for t in gguf.tensors() {
        w.tensor(t.name.clone(), &t.dims, t.ggml_type, gguf.tensor_bytes(t).to_vec()).unwrap();
    }
    let written = w.to_bytes().unwrap();
    assert_eq!(written.len(), bytes.len());
    assert!(written == bytes, "rewritten file differs");
}

/// A file with every metadata value type, nested arrays and several tensor types.
fn synthetic_writer(alignment: Option<u32>) -> GgufWriter {
    let mut w = GgufWriter::new();
    if let Some(a) = alignment {
        w.metadata("general.alignment", Value::U32(a)).unwrap();
    }
    w.metadata("general.architecture", Value::String("llama".into())).unwrap();
    w.metadata("t.u8", Value::U8(200)).unwrap();
    w.metadata("t.i8", Value::I8(-5)).unwrap();
    w.metadata("t.u16", Value::U16(60000)).unwrap();
    w.metadata("t.i16", Value::I16(-30000)).unwrap();
    w.metadata("t.u32", Value::U32(4_000_000_000)).unwrap();
    w.metadata("t.i32", Value::I32(-7)).unwrap();
    w.metadata("t.u64", Value::U64(1 << 40)).unwrap();
    w.metadata("t.i64", Value::I64(-(1 << 40))).unwrap();
    w.metadata("t.f32", Value::F32(1.5)).unwrap();
    w.metadata("t.f64", Value::F64(-2.25)).unwrap();
    w.metadata("t.bool", Value::Bool(true)).unwrap();
    w.metadata("t.str", Value::String("héllo ▁ 東京".into())).unwrap();
    w.metadata("t.strs", Value::Array(Array::String(vec!["a".into(), String::new(), "<0x0A>".into()]))).unwrap();
    w.metadata("t.i32s", Value::Array(Array::I32(vec![1, -2, 3]))).unwrap();
    w.metadata("t.f32s", Value::Array(Array::F32(vec![0.5, -1.0]))).unwrap();
    w.metadata("t.bools", Value::Array(Array::Bool(vec![true, false]))).unwrap();
    w.metadata(
        "t.nested",
        Value::Array(Array::Array(vec![Array::U8(vec![1, 2]), Array::String(vec!["x".into()]), Array::Array(vec![])])),
    )
    .unwrap();
    w.tensor("f32", &[3, 2], GgmlType::F32, (0..24).collect()).unwrap();
    w.tensor("f16", &[5], GgmlType::F16, vec![7; 10]).unwrap();
    w.tensor("q4_0", &[64, 3], GgmlType::Q4_0, vec![9; 2 * 3 * 18]).unwrap();
    w.tensor("q4_k", &[256, 2], GgmlType::Q4_K, vec![3; 2 * 144]).unwrap();
    w.tensor("bf16", &[2, 1, 1, 3], GgmlType::BF16, vec![1; 12]).unwrap();
    w
}

#[test]
fn synthetic_round_trip() {
    for alignment in [None, Some(1), Some(8), Some(64), Some(4096)] {
        let w = synthetic_writer(alignment);
        let bytes = w.to_bytes().unwrap();
        let gguf = Gguf::parse(&bytes).unwrap();
        assert_eq!(gguf.alignment, u64::from(alignment.unwrap_or(32)));
        assert_eq!(gguf.get("t.u8"), Some(&Value::U8(200)));
        assert_eq!(gguf.get("t.i64"), Some(&Value::I64(-(1 << 40))));
        assert_eq!(gguf.get("t.f64"), Some(&Value::F64(-2.25)));
        assert_eq!(gguf.get_str("t.str").unwrap(), Some("héllo ▁ 東京"));
        assert_eq!(gguf.get_u32("t.u16").unwrap(), Some(60000));
        assert!(gguf.get_u32("t.u64").unwrap_err().to_string().contains("out of range"));
        assert!(matches!(gguf.get_u32("t.i32"), Err(GgufError::OutOfRange { .. })));
        assert_eq!(gguf.get_i32_array("t.i32s").unwrap(), Some(vec![1, -2, 3]));
        assert_eq!(gguf.get_f32_array("t.f32s").unwrap(), Some(vec![0.5, -1.0]));
        assert_eq!(gguf.get_str_array("t.strs").unwrap().unwrap()[2], "<0x0A>");
        assert!(matches!(gguf.get("t.nested"), Some(Value::Array(Array::Array(v))) if v.len() == 3));
        let names: Vec<&str> = gguf.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["f32", "f16", "q4_0", "q4_k", "bf16"]);
        let f32t = gguf.tensor("f32").unwrap();
        assert_eq!(gguf.tensor_bytes(f32t), (0..24).collect::<Vec<u8>>());
        let q4k = gguf.tensor("q4_k").unwrap();
        assert_eq!((q4k.rows(), q4k.cols(), q4k.n_bytes), (2, 256, 288));
        assert_eq!(gguf.tensor("bf16").unwrap().rows(), 3);
        for t in gguf.tensors() {
            assert_eq!(t.offset % gguf.alignment, 0);
        }
        // written again, the bytes are the same
        let mut again = GgufWriter::new();
        for (k, v) in gguf.metadata() {
            again.metadata(k.clone(), v.clone()).unwrap();
        }
        for t in gguf.tensors() {
            again.tensor(t.name.clone(), &t.dims, t.ggml_type, gguf.tensor_bytes(t).to_vec()).unwrap();
        }
        assert_eq!(again.to_bytes().unwrap(), bytes);
    }
}

#[test]
fn writer_refuses_inconsistent_input() {
    let mut w = GgufWriter::new();
    assert!(w.tensor("t", &[33], GgmlType::Q4_0, vec![0; 18]).is_err());
    assert!(w.tensor("t", &[4], GgmlType::F32, vec![0; 15]).is_err());
    w.tensor("t", &[4], GgmlType::F32, vec![0; 16]).unwrap();
    assert!(w.tensor("t", &[4], GgmlType::F32, vec![0; 16]).is_err());
    assert!(w.metadata("general.alignment", Value::U32(3)).is_err());
    assert!(w.metadata("general.alignment", Value::U64(32)).is_err());
    w.metadata("k", Value::U8(1)).unwrap();
    assert!(w.metadata("k", Value::U8(1)).is_err());
}

#[test]
fn truncated_at_every_byte_is_an_error() {
    let w = synthetic_writer(None);
    let bytes = w.to_bytes().unwrap();
    let full = GgufHeader::parse(&bytes).unwrap();
    let data_end = full.tensors().iter().map(|t| t.file_range().end).max().unwrap();
    for len in 0..bytes.len() {
        let result = GgufHeader::parse(&bytes[..len]);
        if len >= data_end {
            // only trailing padding is missing
            assert!(result.is_ok(), "prefix of {len} bytes: {:?}", result.err());
            continue;
        }
        match result {
            Err(GgufError::Truncated { .. })
            | Err(GgufError::CountTooLarge { .. })
            | Err(GgufError::TensorOutOfBounds { .. }) => {}
            other => panic!("prefix of {len} bytes gave {other:?}"),
        }
    }
}

/// Builds raw (possibly invalid) GGUF bytes.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, tensors: u64, kvs: u64) -> Raw {
        let mut r = Raw::default();
        r.bytes(b"GGUF").u32(version).u64(tensors).u64(kvs);
        r
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64).bytes(s)
    }
    /// A key with a u32 value.
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key.as_bytes()).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to `align` and appends `n` data bytes.
    fn data(&mut self, align: usize, n: usize) -> &mut Self {
        let len = self.0.len().next_multiple_of(align);
        self.0.resize(len + n, 0);
        self
    }
    fn parse(&self) -> Result<GgufHeader, GgufError> {
        GgufHeader::parse(&self.0)
    }
}

#[test]
fn bad_magic_and_versions() {
    assert!(matches!(GgufHeader::parse(b"GGUX\x03\0\0\0"), Err(GgufError::BadMagic { .. })));
    assert!(matches!(GgufHeader::parse(b""), Err(GgufError::Truncated { .. })));
    for version in [0, 1, 4, u32::MAX] {
        let r = Raw::header(version, 0, 0);
        assert!(matches!(r.parse(), Err(GgufError::UnsupportedVersion(v)) if v == version));
    }
    for version in [2, 3] {
        let header = Raw::header(version, 0, 0).parse().unwrap();
        assert_eq!(header.version, version);
    }
}

#[test]
fn huge_counts_and_lengths() {
    for count in [1 << 40, u64::MAX, 1 << 20] {
        assert!(matches!(Raw::header(3, count, 0).parse(), Err(GgufError::CountTooLarge { .. })), "{count}");
        assert!(matches!(Raw::header(3, 0, count).parse(), Err(GgufError::CountTooLarge { .. })), "{count}");
    }
    // a key whose length is 2^40 and u64::MAX
    for len in [1u64 << 40, u64::MAX] {
        let mut r = Raw::header(3, 0, 1);
        r.u64(len).bytes(b"k\x04\0\0\0\0\0\0\0");
        assert!(matches!(r.parse(), Err(GgufError::Truncated { .. })), "{len}");
    }
    // an array of 2^40 u32, of u64::MAX strings
    for (ty, len) in [(4u32, 1u64 << 40), (8, u64::MAX), (9, 1 << 62), (0, u64::MAX)] {
        let mut r = Raw::header(3, 0, 1);
        r.str(b"arr").u32(9).u32(ty).u64(len).bytes(&[0; 64]);
        assert!(matches!(r.parse(), Err(GgufError::CountTooLarge { .. })), "type {ty} len {len}");
    }
    // a string value inside an array whose length is huge
    let mut r = Raw::header(3, 0, 1);
    r.str(b"arr").u32(9).u32(8).u64(2).str(b"ok").u64(u64::MAX);
    assert!(matches!(r.parse(), Err(GgufError::Truncated { .. })));
}

#[test]
fn metadata_value_errors() {
    // bad UTF-8 in a key, in a string value, in an array element
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k\xff").u32(4).u32(1);
    assert!(matches!(r.parse(), Err(GgufError::InvalidUtf8 { offset: 32, .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(8).str(b"\xc3\x28");
    assert!(matches!(r.parse(), Err(GgufError::InvalidUtf8 { .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(9).u32(8).u64(2).str(b"fine").str(b"\xe2\x82");
    let err = r.parse().unwrap_err();
    assert!(matches!(err, GgufError::InvalidUtf8 { .. }));
    assert!(err.to_string().contains("string 1 of `k`"), "{err}");
    // unknown value type, in a value and as an array element type
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(13).u32(0);
    assert!(matches!(r.parse(), Err(GgufError::UnknownValueType { type_id: 13, .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(9).u32(u32::MAX).u64(0);
    assert!(matches!(r.parse(), Err(GgufError::UnknownValueType { .. })));
    // bool other than 0/1
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(7).bytes(&[2]);
    assert!(matches!(r.parse(), Err(GgufError::InvalidBool { value: 2, .. })));
    // duplicate key
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("k", 1).kv_u32("k", 2);
    assert!(matches!(r.parse(), Err(GgufError::DuplicateKey { .. })));
    // arrays nested too deep, including deeper than any stack would take
    for depth in [9usize, 100_000] {
        let mut r = Raw::header(3, 0, 1);
        r.str(b"k").u32(9);
        for _ in 0..depth {
            r.u32(9).u64(1);
        }
        r.u32(0).u64(0);
        assert!(matches!(r.parse(), Err(GgufError::NestingTooDeep { .. })), "depth {depth}");
    }
    // eight levels are fine
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(9);
    for _ in 0..7 {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(1).bytes(&[5]);
    r.parse().unwrap();
}

#[test]
fn wrong_array_element_types_are_refused_by_accessors() {
    let mut w = GgufWriter::new();
    w.metadata("tokenizer.ggml.tokens", Value::Array(Array::I32(vec![1, 2]))).unwrap();
    w.metadata("tokenizer.ggml.token_type", Value::Array(Array::String(vec!["1".into()]))).unwrap();
    w.metadata("tokenizer.ggml.scores", Value::Array(Array::U8(vec![1]))).unwrap();
    w.metadata("n", Value::Array(Array::U64(vec![u64::MAX]))).unwrap();
    let bytes = w.to_bytes().unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    assert!(matches!(g.get_str_array("tokenizer.ggml.tokens"), Err(GgufError::WrongType { .. })));
    assert!(matches!(g.get_i32_array("tokenizer.ggml.token_type"), Err(GgufError::WrongType { .. })));
    assert!(matches!(g.get_f32_array("tokenizer.ggml.scores"), Err(GgufError::WrongType { .. })));
    assert!(matches!(g.get_i32_array("n"), Err(GgufError::OutOfRange { .. })));
    let err = g.get_str_array("tokenizer.ggml.tokens").unwrap_err().to_string();
    assert!(err.contains("tokenizer.ggml.tokens") && err.contains("array of i32"), "{err}");
}

#[test]
fn alignment_must_be_a_sane_u32_power_of_two() {
    for a in [0u32, 3, 48, 1 << 21, 1 << 31] {
        let mut r = Raw::header(3, 0, 1);
        r.kv_u32("general.alignment", a);
        assert!(matches!(r.parse(), Err(GgufError::BadAlignment { .. })), "{a}");
    }
    // 2^40 can only be written as u64: the wrong type
    let mut r = Raw::header(3, 0, 1);
    r.str(b"general.alignment").u32(10).u64(1 << 40);
    assert!(matches!(r.parse(), Err(GgufError::BadAlignment { .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str(b"general.alignment").u32(8).str(b"32");
    assert!(matches!(r.parse(), Err(GgufError::BadAlignment { .. })));
    for a in [1u32, 16, 1 << 20] {
        let mut r = Raw::header(3, 0, 1);
        r.kv_u32("general.alignment", a);
        assert_eq!(r.parse().unwrap().alignment, u64::from(a));
    }
}

#[test]
fn tensor_table_errors() {
    let one = |dims: &[u64], ty: u32, offset: u64, data: usize| {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("w", dims, ty, offset).data(32, data);
        r.parse()
    };
    one(&[8, 2], 0, 0, 64).unwrap();
    // data past the end, offset past the end, offset + size overflowing
    assert!(matches!(one(&[8, 2], 0, 0, 63), Err(GgufError::TensorOutOfBounds { .. })));
    assert!(matches!(one(&[8, 2], 0, 1 << 40, 64), Err(GgufError::TensorOutOfBounds { .. })));
    assert!(matches!(one(&[8, 2], 0, u64::MAX - 31, 64), Err(GgufError::TensorOutOfBounds { .. })));
    // misaligned
    assert!(matches!(one(&[8, 2], 0, 4, 128), Err(GgufError::MisalignedTensor { offset: 4, .. })));
    // dims whose product overflows u64 / i64, and a byte size that overflows
    assert!(matches!(one(&[1 << 32, 1 << 32, 1 << 32], 0, 0, 64), Err(GgufError::DimsOverflow { .. })));
    assert!(matches!(one(&[1 << 32, 1 << 31], 0, 0, 64), Err(GgufError::DimsOverflow { .. })));
    assert!(matches!(one(&[u64::MAX], 0, 0, 64), Err(GgufError::DimsOverflow { .. })));
    assert!(matches!(one(&[1 << 62], 0, 0, 64), Err(GgufError::DimsOverflow { .. })));
    assert!(matches!(one(&[1 << 60], 0, 0, 64), Err(GgufError::TensorOutOfBounds { .. })));
    // too many dims
    assert!(matches!(one(&[1, 1, 1, 1, 1], 0, 0, 64), Err(GgufError::TooManyDims { n_dims: 5, .. })));
    let mut r = Raw::header(3, 1, 0);
    r.str(b"w").u32(u32::MAX).bytes(&[0; 64]);
    assert!(matches!(r.parse(), Err(GgufError::TooManyDims { .. })));
    // unknown and unsized types name the tensor
    for ty in [4u32, 5, 16, 31, 1000, u32::MAX] {
        let err = one(&[32], ty, 0, 64).unwrap_err();
        assert!(matches!(&err, GgufError::UnknownTensorType { tensor, .. } if tensor == "w"), "{ty}: {err}");
        assert!(err.to_string().contains("`w`"));
    }
    // a row that is not a whole number of blocks
    assert!(matches!(one(&[33, 1], 2, 0, 64), Err(GgufError::PartialBlock { cols: 33, .. })));
    // a name that is not UTF-8
    let mut r = Raw::header(3, 1, 0);
    r.str(b"\xff").u32(1).u64(1).u32(0).u64(0).data(32, 32);
    assert!(matches!(r.parse(), Err(GgufError::InvalidUtf8 { .. })));

    // overlapping tensors, duplicate names
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[16], 0, 64).data(32, 128);
    r.parse().unwrap();
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 64).tensor("b", &[16], 0, 0).data(32, 128);
    r.parse().unwrap();
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 64).tensor("b", &[16], 0, 32).data(32, 128);
    assert!(matches!(r.parse(), Err(GgufError::OverlappingTensors { .. })));
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[8], 0, 32).data(32, 128);
    assert!(matches!(r.parse(), Err(GgufError::OverlappingTensors { .. })));
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0).tensor("a", &[16], 0, 64).data(32, 128);
    assert!(matches!(r.parse(), Err(GgufError::DuplicateTensor { .. })));
}

#[test]
fn errors_say_where() {
    let mut r = Raw::header(3, 0, 1);
    r.str(b"general.name").u32(8).u64(1000).bytes(b"short");
    let err = r.parse().unwrap_err().to_string();
    assert!(err.contains("general.name") && err.contains("byte"), "{err}");
}

#[test]
fn model_config_from_metadata() {
    use asdsl_model::gguf::GgufModelConfig;
    if let Some(bytes) = real_model() {
        let gguf = Gguf::parse(&bytes).unwrap();
        let c = GgufModelConfig::from_header(&gguf).unwrap();
        assert_eq!(c.architecture, "llama");
        assert_eq!((c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads), (576, 30, 9, 3));
        assert_eq!((c.intermediate_size, c.context_length, c.head_dim, c.rope_dims), (1536, 8192, 64, 64));
        assert_eq!((c.rope_theta, c.rms_norm_eps, c.vocab_size), (100000.0, 1e-5, 49152));
        assert!(c.tied_embeddings);
    }
    let base = |arch: &str, heads_kv: u32| {
        let mut w = GgufWriter::new();
        w.metadata("general.architecture", Value::String(arch.into())).unwrap();
        for (k, v) in [
            ("embedding_length", 64),
            ("block_count", 2),
            ("attention.head_count", 4),
            ("feed_forward_length", 96),
            ("context_length", 128),
            ("vocab_size", 10),
        ] {
            w.metadata(format!("{arch}.{k}"), Value::U32(v)).unwrap();
        }
        w.metadata(format!("{arch}.attention.head_count_kv"), Value::U32(heads_kv)).unwrap();
        w.metadata(format!("{arch}.attention.layer_norm_rms_epsilon"), Value::F32(1e-6)).unwrap();
        w
    };
    for arch in ["llama", "qwen2", "phi3"] {
        let bytes = base(arch, 2).to_bytes().unwrap();
        let c = GgufModelConfig::from_header(&GgufHeader::parse(&bytes).unwrap()).unwrap();
        assert_eq!((c.head_dim, c.rope_dims, c.rope_theta, c.num_kv_heads), (16, 16, 10000.0, 2));
    }
    // kv heads that do not divide the heads, an unsupported architecture, a missing key
    let bytes = base("llama", 3).to_bytes().unwrap();
    assert!(matches!(
        GgufModelConfig::from_header(&GgufHeader::parse(&bytes).unwrap()),
        Err(GgufError::OutOfRange { .. })
    ));
    let bytes = base("gpt2", 2).to_bytes().unwrap();
    assert!(matches!(
        GgufModelConfig::from_header(&GgufHeader::parse(&bytes).unwrap()),
        Err(GgufError::OutOfRange { .. })
    ));
    let bytes = GgufWriter::new().to_bytes().unwrap();
    assert!(matches!(
        GgufModelConfig::from_header(&GgufHeader::parse(&bytes).unwrap()),
        Err(GgufError::MissingKey { .. })
    ));
}
