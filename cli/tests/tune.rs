//! `asdsl tune --verify` end to end: a short tuning, then the exhaustive
//! sweep and the side-by-side check of every key, written as a markdown
//! report.

mod common;

use common::{asdsl, scratch, stderr};

#[test]
fn verify_reports_every_key_against_the_best_side_by_side() {
    let cache = scratch("tune-verify");
    let plan = cache.join("plan.json");
    let report = cache.join("report.md");
    let (plan_arg, report_arg) = (plan.to_string_lossy(), report.to_string_lossy());
    let args = [
        "tune",
        "--geometry",
        "smollm2-135m",
        "--quant",
        "q8_0",
        "--threads",
        "1",
        "--budget",
        "2",
        "--no-roofline",
        "--rotation-mib",
        "16",
        "-o",
        &plan_arg,
        "--verify",
        "--report",
        &report_arg,
    ];
    let out = asdsl(&cache, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(plan.is_file());
    let md = std::fs::read_to_string(&report).unwrap();
    let (keys, rest) = md.split_once("Whole decode step").expect("the whole-step table");
    let rows: Vec<Vec<&str>> = keys
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| matrix"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    // smollm2-135m has five distinct matrices: q+o (one shape), k+v,
    // gate+up, down, output.
    assert_eq!(rows.len(), 5, "{md}");
    for row in &rows {
        assert_eq!(row[3], "1", "{row:?}");
        // `choice vs best side by side (the best there)`: the gap, both
        // times, and the fastest of the sweep's layout bests by name.
        let cell = row[7];
        let (gap, detail) = cell.split_once(" % (").unwrap_or_else(|| panic!("{cell}"));
        assert!(gap.parse::<f64>().is_ok_and(f64::is_finite), "{cell}");
        assert!(detail.contains(" us, `q8_0.r") && detail.ends_with(')'), "{cell}");
    }
    assert!(rest.contains("| 1 |"), "{rest}");
}
