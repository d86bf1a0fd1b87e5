//! Judging what was measured, for the page's panels: the Compress verdict
//! and the Pareto view at a margin the user edits, and the factors typed in
//! the Pareto panel. The same functions `bedside pareto` uses
//! (`compress::verdict`, `compress::pareto`); the page shows their answers.

use wasm_bindgen::prelude::*;

use super::to_js;
use crate::compress::pareto::{parse_factors, ParetoSweep};
use crate::compress::verdict::judge;
use crate::metrics::LabelDice;

/// The Compress verdict: per-label Dice against the original
/// (`[{value, name, dice}]`) judged at `margin` (NaN for an empty input,
/// which never passes).
#[wasm_bindgen]
pub fn judge_margin(dice: JsValue, margin: f64) -> Result<JsValue, JsError> {
    let dice: Vec<LabelDice> = serde_wasm_bindgen::from_value(dice).map_err(|e| JsError::new(&format!("bad Dice list: {e}")))?;
    to_js(&judge(&dice, margin))
}

/// A Pareto sweep (as `pareto_sweep` returned it, whole or so far) judged
/// again at `margin`: each point's verdict and the fastest passing model.
#[wasm_bindgen]
pub fn pareto_judge(sweep: JsValue, margin: f64) -> Result<JsValue, JsError> {
    let sweep: ParetoSweep = serde_wasm_bindgen::from_value(sweep).map_err(|e| JsError::new(&format!("bad sweep: {e}")))?;
    to_js(&sweep.judged(margin))
}

/// The factors typed in the Pareto panel, sorted, without repeats; an error
/// names the ones that are not in (0, 1].
#[wasm_bindgen]
pub fn pareto_factors(text: &str) -> Result<Vec<f64>, JsError> {
    parse_factors(text).map_err(|e| JsError::new(&e.to_string()))
}
