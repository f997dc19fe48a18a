//! The benchmark's measuring tools, run as `scripts/bench.sh` runs them: the `bench`
//! binary against the real `iperf3` and real files. Nothing here judges a speed; it
//! checks that each tool measures something real and reports it in the script's form.

mod common;

use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

/// Runs `bench ARGS...`, expects success, returns its stdout.
fn bench(args: &[&str]) -> String {
    let out = Command::new(BENCH).args(args).output().expect("bench runs");
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The value of `key=` in a `kind key=value ...` line.
fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in {line:?}"))
}

#[test]
fn iperf3_measures_loopback_tcp() {
    let iperf3 = common::require_program("iperf3", "iperf3");
    let line = bench(&[
        "iperf3",
        "--secs",
        "1",
        "--program",
        iperf3.to_str().unwrap(),
    ]);
    assert!(line.starts_with("iperf3 "), "{line}");
    // The receiver counted bytes (how many is the measurement, not judged here).
    assert!(field(&line, "bytes") > 0.0, "{line}");
}

#[test]
fn a_missing_iperf3_is_named() {
    let out = Command::new(BENCH)
        .args(["iperf3", "--secs", "1", "--program", "/nonexistent/iperf3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Debian package iperf3"), "{err}");
}

#[test]
fn copy_and_spread_report_in_the_scripts_form() {
    let d = tempfile::tempdir().unwrap();
    let (src, dest) = (d.path().join("src"), d.path().join("dest"));
    bench(&["make-file", src.to_str().unwrap(), "--size", "3000000"]);
    let line = bench(&["copy", src.to_str().unwrap(), dest.to_str().unwrap()]);
    assert_eq!(field(&line, "bytes"), 3_000_000.0, "{line}");
    assert!(!dest.exists(), "the copy is removed afterwards");
    let results = d.path().join("results.txt");
    std::fs::write(
        &results,
        "charlie chunk=1024 rep=1 bytes=1000000000 wall=1 iperf_mbps=3000 copy_mbps=2000\n\
         charlie chunk=1024 rep=2 bytes=1000000000 wall=1 iperf_mbps=1000 copy_mbps=2000\n",
    )
    .unwrap();
    let line = bench(&["spread", results.to_str().unwrap(), "--chunk", "1024"]);
    // Pair ratios 0.5 and 1.0: median 0.75, spread 0.5 / 0.75, wide.
    assert_eq!(field(&line, "n"), 2.0, "{line}");
    assert_eq!(field(&line, "median"), 0.75, "{line}");
    assert_eq!(field(&line, "wide"), 1.0, "{line}");
}
