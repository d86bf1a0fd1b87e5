//! `bedside tucker`: one kernel's Tucker-2, its error and its time.

use std::time::Instant;

use serde_json::json;

use super::commands::print;
use super::kernel_file::read_kernel;
use super::CliError;
use crate::tucker::{partial_tucker2, HooiOptions};

pub fn tucker(kernel: &str, ranks: &str, json: bool) -> Result<(), CliError> {
    let ranks = parse_ranks(ranks)?;
    let k = read_kernel(kernel)?;
    let started = Instant::now();
    let t = partial_tucker2(&k.shape, &k.values, ranks, &HooiOptions::default())
        .map_err(|e| CliError(format!("{kernel}: {e}")))?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let spatial: usize = k.shape[2..].iter().product();
    let params_before = k.values.len();
    let params_after = k.shape[1] * ranks[1] + ranks[0] * ranks[1] * spatial + ranks[0] * k.shape[0];
    let value = json!({
        "kernel": kernel,
        "shape": k.shape,
        "ranks": ranks,
        "rel_error": t.rel_error,
        "sweep_errors": t.sweep_errors,
        "sweeps": t.sweep_errors.len(),
        "ms": ms,
        "params_before": params_before,
        "params_after": params_after,
    });
    print(value, json, || {
        format!(
            "{kernel} {:?} at ranks [{}, {}]: relative error {:.6} after {} sweeps, {ms:.1} ms; {params_before} → {params_after} weights",
            k.shape,
            ranks[0],
            ranks[1],
            t.rel_error,
            t.sweep_errors.len()
        )
    });
    Ok(())
}

/// `R_OUT,R_IN`.
fn parse_ranks(text: &str) -> Result<[usize; 2], CliError> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    match parts.as_slice() {
        [a, b] => match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) => Ok([a, b]),
            _ => Err(CliError(format!("--ranks {text}: two whole numbers R_OUT,R_IN"))),
        },
        _ => Err(CliError(format!("--ranks {text}: give R_OUT,R_IN"))),
    }
}
