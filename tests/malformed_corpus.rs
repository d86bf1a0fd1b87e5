//! The malformed-file corpus (issue 20), in the CLI: every file under
//! `tests/malformed/` (listed in `corpus.json`, written by `make_corpus.py`)
//! is refused by the command that reads its kind, exiting non-zero with
//! exactly the message the list gives, no panic and nothing written, with
//! its address space capped at 1 GiB (absurd sizes are refused before
//! allocating). The page's side is `tests/e2e/malformed.test.mjs`.
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI

mod common;

use std::path::{Path, PathBuf};


use common::*;
use serde_json::Value;

fn corpus() -> Vec<Value> {
    let list: Value = serde_json::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/malformed/corpus.json")).unwrap()).unwrap();
    list["files"].as_array().unwrap().clone()
}

/// The command that reads `file` of `kind`, and what it would write.
fn command(kind: &str, path: &str, out: &Path) -> Vec<String> {
    let out = out.display().to_string();
    let args: Vec<&str> = match kind {
        "volume" => vec!["info", path],
        "checkpoint" => vec!["import-hdbet", path, "--out", &out],
        "package" => vec!["segment", "--model", path, "--out", &out, "www/sample/ch2.nii.gz"],
        other => panic!("unknown kind {other}"),
    };
    args.into_iter().map(str::to_string).collect()
}

/// Runs `bedside args` with its address space capped at 1 GiB (`ulimit -v`):
/// a reader that allocated for what a hostile header claims, instead of
/// refusing it first, would die of the cap rather than give its message.
fn run_capped(args: &[String]) -> (bool, String, String) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 1048576 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_bedside"))
        .args(args)
        .output()
        .expect("sh runs bedside");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_malformed_file_is_refused_with_its_message() {
    let files = corpus();
    assert!(files.len() >= 30, "the corpus holds {} files", files.len());
    let out = scratch_dir("malformed_corpus").join("never-written");
    let mut checked = 0;
    for entry in &files {
        let name = entry["file"].as_str().unwrap();
        let kind = entry["kind"].as_str().unwrap();
        let path = format!("tests/malformed/{name}");
        assert!(PathBuf::from(&path).exists(), "{path} is missing: run tests/malformed/make_corpus.py");
        let (ok, stdout, stderr) = run_capped(&command(kind, &path, &out));
        if let Some(accepted) = entry.get("accepted") {
            assert!(ok, "{name}: {stderr}");
            let info: Value = serde_json::from_str(&run(&["info", "--json", &path]).1).unwrap();
            assert_eq!(info["spacing"], accepted["spacing"], "{name}");
            checked += 1;
            continue;
        }
        assert!(!ok, "{name} was accepted: {stdout}");
        assert!(!stderr.contains("panicked"), "{name}: a panic instead of a message: {stderr}");
        assert!(!out.exists(), "{name}: {} was written", out.display());
        // The checkpoint reader names the file by its name; the others by the path given.
        let shown = if kind == "checkpoint" { name } else { &path };
        let expected = format!("bedside: {shown}: {}", entry["message"].as_str().unwrap());
        assert_eq!(stderr.trim_end(), expected, "{name}");
        checked += 1;
    }
    eprintln!("# malformed corpus: {checked} files, each refused with its message (or read as nibabel reads it)");
}
