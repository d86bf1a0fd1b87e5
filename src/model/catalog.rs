//! `models/index.json`: the list of model packages the page offers, with the
//! facts its model card shows (parameters, FLOPs, Dice table), so the page
//! needs one small request to fill its selector.

use serde::{Deserialize, Serialize};

use super::manifest::{Evaluation, Manifest};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    pub id: String,
    pub name: String,
    /// Package folder, relative to the page.
    pub path: String,
    pub family: String,
    pub params: u64,
    pub flops_per_patch: u64,
    /// Sliding-window patch (network axis order).
    pub patch: [usize; 3],
    /// Number of further ensemble members (0: none).
    pub ensemble: usize,
    /// The teacher of a trained student: the model whose grid it works on and
    /// which the page's Compare runs beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<String>,
    /// Whether the teacher taught it (KD terms or teacher labels), as opposed
    /// to a twin trained on independent labels only.
    #[serde(default)]
    pub distilled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluation: Vec<Evaluation>,
}

impl CatalogEntry {
    pub fn from_manifest(m: &Manifest, path: &str) -> Self {
        let training = m.training.as_ref();
        let teacher = training.and_then(|t| t.get("teacher")).and_then(|t| t.as_str()).map(str::to_string);
        let distilled = training.is_some_and(|t| {
            let loss = &t["config"]["loss"];
            let kd_terms = ["kd", "encoder", "bottleneck", "decoder"].iter().any(|k| loss[*k].as_f64().unwrap_or(0.0) > 0.0);
            let teacher_labels = t["volumes"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v["hard_labels"] == "teacher argmax"));
            kd_terms || teacher_labels
        });
        Self {
            id: m.id.clone(),
            name: m.name.clone(),
            path: path.to_string(),
            family: m.family.clone(),
            params: m.params,
            flops_per_patch: m.flops_per_patch,
            patch: m.preprocessing.patch_size,
            ensemble: m.ensemble.len(),
            teacher,
            distilled,
            evaluation: m.evaluation.clone(),
        }
    }
}

/// The catalog of every package folder under `models_dir` (teachers first,
/// then by id), as the page reads it.
#[cfg(not(target_arch = "wasm32"))]
pub fn build_catalog(models_dir: &std::path::Path) -> Result<Vec<CatalogEntry>, super::ModelError> {
    let io = |e: std::io::Error| super::ModelError::Io { path: models_dir.display().to_string(), message: e.to_string() };
    let mut entries = Vec::new();
    for dir in std::fs::read_dir(models_dir).map_err(io)? {
        let dir = dir.map_err(io)?.path();
        let json = dir.join("model.json");
        if !json.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&json).map_err(io)?;
        let manifest = super::package::parse_manifest(&text)?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        entries.push(CatalogEntry::from_manifest(&manifest, &format!("models/{name}/")));
    }
    entries.sort_by(|a, b| (a.teacher.is_some(), &a.id).cmp(&(b.teacher.is_some(), &b.id)));
    Ok(entries)
}
