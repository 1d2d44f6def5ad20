//! The plan: JSON round trip, refusal of plans from other machines, builds
//! and format versions (with fake fingerprints), robustness against damaged
//! files, fallback for stale entries, the heuristic default, and a tiny
//! tuning run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use asdsl_kernels::Format;
use asdsl_kernels::cpu;
use asdsl_kernels::pack::{Layout, PackedMatrix, quantize_matrix};
use asdsl_kernels::registry::{self, VARIANTS};
use asdsl_kernels::run::{Partition, Schedule};
use asdsl_kernels::tune::heuristic::heuristic_variant;
use asdsl_kernels::tune::plan::{
    self, ASDSL_VERSION, ChoiceSource, Entry, Fingerprint, LoadedPlan, Measured, PLAN_VERSION, Plan, PlanStatus,
};
use asdsl_kernels::tune::{self, MatrixKey, PlanError, TuneOptions};
use asdsl_kernels::variant::{Activation, Isa, Sparsity};

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("asdsl-plan-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn measured(variant: &str, secs: f64) -> Measured {
    Measured {
        variant: variant.to_string(),
        partition: Partition::default(),
        secs,
        gbs: 1.0,
        roofline_pct: Some(50.0),
        samples: 7,
    }
}

/// A plan for this machine with one entry whose variant is the heuristic's.
fn sample_plan() -> (Plan, MatrixKey) {
    let key = MatrixKey::dense(Format::Q4_0, 256, 512);
    let h = tune::heuristic(&key, 1).unwrap();
    let mut plan = Plan::new_for_this_machine();
    plan.entries.push(Entry {
        key,
        threads: 1,
        choice: measured(h.variant.name, 1e-5),
        runners_up: vec![measured("q4_0.r1.c1.dense.f32.scalar", 2e-5)],
        heuristic: Some(measured(h.variant.name, 1e-5)),
        slowest: Some(measured("q4_0.r1.c1.dense.f32.scalar", 2e-5)),
        candidates: 3,
    });
    (plan, key)
}

#[test]
fn json_round_trip_and_file_round_trip() {
    let (plan, key) = sample_plan();
    let json = plan.to_json();
    let back = Plan::from_json(&json, Path::new("mem")).unwrap();
    assert_eq!(back, plan);
    assert!(json.contains("\"format\": \"q4_0\""), "{json}");
    let path = temp_path("round-trip.json");
    plan.save(&path).unwrap();
    let loaded = Plan::load(&path).unwrap();
    assert_eq!(loaded, plan);
    let choice = loaded.choose(&key, 1).unwrap();
    assert_eq!(choice.source, ChoiceSource::Plan);
    // No temporary file is left behind (this test's own: the other tests of
    // this process save plans in the same directory at the same time).
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(".round-trip.json.") && name.ends_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty());
    let status = LoadedPlan::load(Some(&path));
    assert!(status.plan.is_some());
    assert!(status.status.to_string().starts_with("plan "), "{}", status.status);
}

#[test]
fn another_machine_is_refused_with_the_differences() {
    let (plan, _) = sample_plan();
    let here = Fingerprint::current();
    let mut fake = plan.clone();
    fake.fingerprint.brand = "Fake CPU 9000".into();
    fake.fingerprint.physical_cores = here.physical_cores + 7;
    fake.fingerprint.features.push("avx1024".into());
    let err = fake.check(Path::new("p.json")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PlanError::Fingerprint { .. }), "{msg}");
    assert!(msg.contains(&format!("brand: plan `Fake CPU 9000`, this machine `{}`", here.brand)), "{msg}");
    assert!(
        msg.contains(&format!(
            "physical cores: plan {}, this machine {}",
            here.physical_cores + 7,
            here.physical_cores
        )),
        "{msg}"
    );
    assert!(msg.contains("the plan's CPU has avx1024 which this machine lacks"), "{msg}");
    assert!(msg.starts_with("p.json: tuned on another machine"), "{msg}");

    // A plan from a CPU without AVX2, checked on a made-up AVX2 machine.
    let mut old = here.clone();
    old.features.retain(|f| f != "avx2");
    let mut newer = old.clone();
    newer.features.push("avx2".into());
    let mut p = plan.clone();
    p.fingerprint = old;
    let err = p.check_against(Path::new("x"), ASDSL_VERSION, &plan::registry_hash(), VARIANTS.len(), &newer);
    assert!(err.unwrap_err().to_string().contains("this machine has avx2 which the plan's CPU lacked"));
}

#[test]
fn another_registry_or_version_is_refused() {
    let (plan, _) = sample_plan();
    let mut p = plan.clone();
    p.registry_hash = "fnv1a64:0000000000000000".into();
    let msg = p.check(Path::new("p.json")).unwrap_err().to_string();
    assert!(msg.contains("tuned for kernel registry fnv1a64:0000000000000000"), "{msg}");
    assert!(msg.contains(&plan::registry_hash()), "{msg}");

    let mut p = plan.clone();
    p.asdsl_version = "0.0.1-old".into();
    let msg = p.check(Path::new("p.json")).unwrap_err().to_string();
    assert_eq!(msg, format!("p.json: tuned by asdsl 0.0.1-old, this is asdsl {ASDSL_VERSION}"));

    let json = plan.to_json().replacen(&format!("\"version\": {PLAN_VERSION}"), "\"version\": 99", 1);
    let err = Plan::from_json(&json, Path::new("p.json")).unwrap_err();
    assert!(matches!(err, PlanError::Version { found: 99, .. }), "{err}");
    assert_eq!(err.to_string(), format!("p.json: plan format version 99, this asdsl reads version {PLAN_VERSION}"));

    // The registry hash depends on the names only, not their order.
    assert_eq!(plan::registry_hash_of(["b", "a"]), plan::registry_hash_of(["a", "b"]));
    assert_ne!(plan::registry_hash_of(["a"]), plan::registry_hash_of(["a", "b"]));
}

#[test]
fn damaged_plans_are_errors_not_panics() {
    let (plan, _) = sample_plan();
    let json = plan.to_json();
    for cut in (0..json.len()).step_by(7) {
        let err = Plan::from_json(&json[..cut], Path::new("t.json")).unwrap_err();
        assert!(matches!(err, PlanError::Corrupt { .. }), "cut at {cut}: {err}");
    }
    for text in ["", "null", "[]", "{}", "{\"version\": \"1\"}", "garbage", "{\"version\": 1}"] {
        assert!(Plan::from_json(text, Path::new("g")).is_err(), "{text}");
    }
    // Hand edits: wrong types, unknown format, impossible values.
    let edits = [
        ("\"rows\": 256", "\"rows\": \"many\""),
        ("\"format\": \"q4_0\"", "\"format\": \"q9_9\""),
        ("\"sparsity\": \"dense\"", "\"sparsity\": \"holes\""),
        ("\"threads\": 1", "\"threads\": 0"),
        ("\"rows\": 256", "\"rows\": 0"),
        ("\"cols\": 512", "\"cols\": 500"),
        ("\"secs\": 0.00001", "\"secs\": -1.0"),
        ("\"rows_per_chunk\": 256", "\"rows_per_chunk\": 0"),
        ("\"schedule\": \"static\"", "\"schedule\": \"sometimes\""),
        ("\"registry_variants\"", "\"registry_variantz\""),
    ];
    for (from, to) in edits {
        assert!(json.contains(from), "{from} not in {json}");
        let edited = json.replacen(from, to, 1);
        let err = Plan::from_json(&edited, Path::new("e.json")).unwrap_err();
        assert!(matches!(err, PlanError::Corrupt { .. }), "{to}: {err}");
    }
    // Not UTF-8, and missing files.
    let path = temp_path("binary.json");
    std::fs::write(&path, [0xff, 0xfe, 0x00, 0x7b]).unwrap();
    assert!(matches!(Plan::load(&path), Err(PlanError::Corrupt { .. })));
    let missing = temp_path("does-not-exist.json");
    assert!(matches!(Plan::load(&missing), Err(PlanError::Io { .. })));
    let status = LoadedPlan::load(Some(&missing)).status;
    assert!(matches!(status, PlanStatus::Refused(_)));
    let line = status.to_string();
    assert!(line.starts_with("no plan: ") && line.ends_with(", using heuristic default"), "{line}");
}

#[test]
fn stale_entries_fall_back_to_the_heuristic() {
    let (mut plan, key) = sample_plan();
    plan.entries[0].choice.variant = "q4_0.r16.c1.dense.q8.avx1024".into();
    let choice = plan.choose(&key, 1).unwrap();
    let ChoiceSource::Heuristic(reason) = &choice.source else { panic!("used a stale entry") };
    assert!(reason.contains("q4_0.r16.c1.dense.q8.avx1024") && reason.contains("no longer exists"), "{reason}");
    assert_eq!(choice.variant.name, tune::heuristic(&key, 1).unwrap().variant.name);

    // A variant of another format (a hand edit) is not used either.
    plan.entries[0].choice.variant = "q8_0.r1.c1.dense.f32.scalar".into();
    let choice = plan.choose(&key, 1).unwrap();
    assert!(matches!(&choice.source, ChoiceSource::Heuristic(r) if r.contains("does not compute")));

    // Keys and thread counts the plan lacks.
    let other = MatrixKey::dense(Format::Q8_0, 64, 64);
    assert!(matches!(plan.choose(&other, 1).unwrap().source, ChoiceSource::Heuristic(_)));
    assert!(matches!(plan.choose(&key, 3).unwrap().source, ChoiceSource::Heuristic(_)));
}

#[test]
fn heuristic_only_picks_allowed_variants() {
    let tiers: [&[Isa]; 4] = [
        &[Isa::Scalar],
        &[Isa::Scalar, Isa::Avx2],
        &[Isa::Scalar, Isa::Avx2, Isa::Avx512],
        &[Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni],
    ];
    for format in Format::all() {
        for sparsity in [Sparsity::Dense, Sparsity::ColumnSparse] {
            let key = MatrixKey { format, rows: 64, cols: 256, sparsity, columns: 1 };
            for allowed in tiers {
                let v = heuristic_variant(&key, |isa| allowed.contains(&isa)).unwrap();
                assert!(allowed.contains(&v.isa) && key.admits(v), "{key}: {}", v.name);
                // The widest allowed ISA that has a variant for the key.
                let widest = VARIANTS.iter().filter(|w| key.admits(w) && allowed.contains(&w.isa)).map(|w| w.isa).max();
                assert_eq!(Some(v.isa), widest, "{key}");
                if sparsity == Sparsity::Dense && v.isa != Isa::Scalar {
                    // The interleaved layout where the ISA and format have it, else four rows.
                    let interleaved = VARIANTS.iter().any(|w| {
                        key.admits(w) && w.isa == v.isa && w.tile_rows == asdsl_kernels::pack::INTERLEAVED_ROWS
                    });
                    let rows = if interleaved { asdsl_kernels::pack::INTERLEAVED_ROWS } else { 4 };
                    assert_eq!((v.activation, v.tile_rows), (Activation::Q8, rows), "{}", v.name);
                }
            }
        }
    }
    // Nothing allowed: an error, not a variant the CPU lacks.
    let key = MatrixKey::dense(Format::Q4_0, 64, 256);
    assert!(matches!(heuristic_variant(&key, |_| false), Err(PlanError::NoVariant(_))));
    // Column-sparse takes one column: no variant for a block of columns.
    let key = MatrixKey { columns: 4, sparsity: Sparsity::ColumnSparse, ..key };
    assert!(heuristic_variant(&key, |_| true).is_err());
    // On this machine the default is always allowed.
    let v = tune::heuristic(&MatrixKey::dense(Format::Q4K, 64, 256), 2).unwrap().variant;
    assert!(cpu::available(v.isa).unwrap());
}

#[test]
fn stacked_matrices_equal_packing_the_stacked_blocks() {
    let (rows, cols) = (64, 256);
    let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0).collect();
    for format in [Format::Q4_0, Format::Q4K, Format::Q6K, "q3g64".parse().unwrap()] {
        let blocks = quantize_matrix(format, rows, cols, &w).unwrap();
        let tall = blocks.repeat(3);
        let mut layouts = vec![Layout::Blocks];
        layouts.extend([1, 2, 4, 8].map(|tile_rows| Layout::RowSlots { tile_rows }));
        if matches!(format, Format::Q4K | Format::Q6K) {
            layouts.push(Layout::Interleaved);
        }
        for layout in layouts {
            let base = PackedMatrix::from_blocks(format, rows, cols, &blocks, layout).unwrap();
            let full = PackedMatrix::from_blocks(format, 3 * rows, cols, &tall, layout).unwrap();
            let stacked = base.stacked(3).unwrap();
            assert_eq!(stacked.data(), full.data(), "{format} {layout:?}");
            assert_eq!((stacked.rows(), stacked.tiles()), (full.rows(), full.tiles()));
        }
        let cm = PackedMatrix::from_blocks(format, rows, cols, &blocks, Layout::ColumnMajor).unwrap();
        assert!(cm.stacked(2).is_none());
    }
}

#[test]
fn tuning_a_tiny_geometry_picks_a_registry_variant_for_every_key() {
    let keys = [
        MatrixKey::dense(Format::Q4_0, 192, 256),
        MatrixKey::dense(Format::Q8_0, 128, 512),
        MatrixKey::dense(Format::Q4_0, 192, 256), // a duplicate is tuned once
        MatrixKey { format: Format::Q4_0, rows: 128, cols: 256, sparsity: Sparsity::ColumnSparse, columns: 1 },
    ];
    let opts = TuneOptions {
        threads: vec![1, 2],
        budget: Duration::from_millis(1500),
        rotation_bytes: Some(2 << 20),
        roofline: Vec::new(),
    };
    let mut calls = 0;
    let start = std::time::Instant::now();
    let plan = tune::tune(&keys, &opts, &mut |p| {
        calls += 1;
        assert!((0.0..=1.0).contains(&p.fraction));
    })
    .unwrap();
    assert!(start.elapsed() < Duration::from_secs(60), "{:?}", start.elapsed());
    assert!(calls > 0);
    assert_eq!(plan.entries.len(), 3 * 2);
    for key in &keys {
        for t in [1, 2] {
            let e = plan.entry(key, t).unwrap_or_else(|| panic!("no entry for {key} at {t}"));
            let v = registry::find(&e.choice.variant).expect("a registry variant");
            assert!(key.admits(v) && cpu::available(v.isa).unwrap(), "{}", v.name);
            assert!(e.choice.secs > 0.0 && e.choice.gbs > 0.0);
            assert!(e.heuristic.is_some() && e.slowest.is_some());
            if t == 1 {
                assert_eq!(e.choice.partition, Partition::default());
            }
            let choice = plan.choose(key, t).unwrap();
            assert_eq!(choice.source, ChoiceSource::Plan);
        }
    }
    // The plan survives a round trip and loads on this machine.
    let path = temp_path("tuned.json");
    plan.save(&path).unwrap();
    assert_eq!(Plan::load(&path).unwrap(), plan);

    // The exhaustive sweep measures every candidate of a key.
    let one = [MatrixKey::dense(Format::Q8_0, 64, 256)];
    let two = TuneOptions { threads: vec![2], ..opts };
    let sweeps = tune::sweep(&one, &two, &mut |_| {}).unwrap();
    let applicable = VARIANTS.iter().filter(|v| one[0].admits(v) && cpu::available(v.isa).unwrap()).count();
    let partitions = tune::partitions(64, 2).len();
    assert_eq!(sweeps[0].results.len(), applicable * partitions);
    assert!(sweeps[0].results.windows(2).all(|w| w[0].secs <= w[1].secs));
    assert!(tune::partitions(64, 2).iter().skip(1).all(|p| p.schedule == Schedule::Dynamic));

    // Side by side: the named candidates, in the order given, each with the
    // same number of samples; a name that is not a variant of the key is refused.
    let fastest = &sweeps[0].results[0];
    let slowest = sweeps[0].results.last().unwrap();
    let pair = [(slowest.variant.as_str(), slowest.partition), (fastest.variant.as_str(), fastest.partition)];
    let measured = tune::head_to_head(&one[0], 2, &pair, &two).unwrap();
    assert_eq!(measured.len(), 2);
    for (m, (name, partition)) in measured.iter().zip(pair) {
        assert_eq!((m.variant.as_str(), m.partition), (name, partition));
        assert_eq!(m.samples, tune::HEAD_TO_HEAD_SAMPLES);
        assert!(m.secs > 0.0 && m.secs.is_finite());
    }
    let q4_0 = VARIANTS.iter().find(|v| v.format == Format::Q4_0).unwrap().name;
    let err = tune::head_to_head(&one[0], 2, &[(q4_0, Partition::default())], &two).unwrap_err();
    assert!(matches!(err, PlanError::Invalid(_)), "{err}");
}
