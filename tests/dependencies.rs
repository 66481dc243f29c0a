//! Checks on the dependency graph that the build relies on.

/// `Cargo.toml` names `gemm` only to switch on its AVX-512 kernels (`x86-v4`) for candle-core's
/// matrix products. That works only while both resolve to the same `gemm`: if candle moves to
/// another version, the feature would land on an unused copy and training would silently lose
/// its AVX-512 kernels (bench/PERF_LOG.md, 2026-11-27).
#[test]
fn one_gemm_version_so_its_avx512_feature_reaches_candle() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("Cargo.lock at the workspace root");
    let versions: Vec<&str> = lock
        .split("[[package]]")
        .filter(|p| p.lines().any(|l| l.trim() == "name = \"gemm\""))
        .filter_map(|p| p.lines().find(|l| l.starts_with("version = ")))
        .collect();
    assert_eq!(
        versions.len(),
        1,
        "Cargo.lock holds {} versions of gemm ({versions:?}): align the `gemm` line of \
         Cargo.toml with candle-core's",
        versions.len()
    );
}
