//! `bedside bench-teach`: the teach room's run, natively, with figures: ms
//! per lock-step step for each preset, and the held-out Dice of the KD
//! student and its twin against the teacher as they learn. The same
//! `distill::lockstep` code the browser's room runs, on flex or wgpu.

use std::path::Path;

use serde_json::json;

use super::commands::{load_model, open_device};
use super::CliError;
use crate::distill::lockstep::{prepare_volume, Room};
use crate::distill::teach_setup::TeachSetup;
use crate::inference::clock::now_ms;
use crate::volume::read_nifti_file;

pub struct BenchTeach<'a> {
    pub volume: &'a Path,
    pub teacher: &'a str,
    pub presets: &'a str,
    pub backend: &'a str,
    pub steps: usize,
    pub eval_every: usize,
    /// Stop a preset's run once the KD student's Dice reaches this.
    pub until_dice: Option<f64>,
    pub setup: TeachSetup,
}

pub fn bench_teach(o: &BenchTeach, json_out: bool) -> Result<(), CliError> {
    let opened = open_device(o.backend)?;
    let teacher = load_model(o.teacher, false, &opened.device)?;
    let volume = read_nifti_file(o.volume)?;
    let mut rows = Vec::new();
    for preset in o.presets.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let setup = TeachSetup { teacher: teacher.manifest.id.clone(), student: preset.to_string(), steps: o.steps, ..o.setup.clone() };
        let data = pollster::block_on(prepare_volume(&volume, &teacher, None, &opened.device))?;
        let teacher_ms = data.teacher_ms;
        let mut room = Room::new(setup, data, &opened.device)?;
        let start = now_ms();
        let mut curve = Vec::new();
        while room.steps_done() < o.steps {
            let n = o.eval_every.min(o.steps - room.steps_done()).max(1);
            if let Err(fault) = pollster::block_on(room.steps(n))? {
                return Err(CliError(fault.to_string()));
            }
            let e = pollster::block_on(room.evaluate())?;
            let seconds = (now_ms() - start) / 1e3;
            if !json_out {
                println!(
                    "{preset:>10} {:>5} step  {:>7.0} ms/step  Dice vs teacher (held out): KD {:.4}  twin {:.4}  {:>7.1} s",
                    e.step, e.ms_per_step, e.dice_kd, e.dice_scratch, seconds
                );
            }
            let reached = o.until_dice.is_some_and(|d| e.dice_kd >= d);
            curve.push(json!({ "step": e.step, "ms_per_step": e.ms_per_step, "dice_kd": e.dice_kd, "dice_scratch": e.dice_scratch, "seconds": seconds }));
            if reached {
                break;
            }
        }
        rows.push(json!({ "preset": preset, "backend": opened.backend.name(), "teacher": teacher.manifest.id, "teacher_ms": teacher_ms, "curve": curve }));
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}
