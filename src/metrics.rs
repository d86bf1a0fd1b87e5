//! Agreement between label volumes.

/// Dice coefficient of the foregrounds (`> 0`) of two masks of equal length:
/// 2|A∩B| / (|A|+|B|). Two empty masks agree perfectly (1.0).
pub fn dice<A: Copy + PartialOrd + Default, B: Copy + PartialOrd + Default>(a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len(), "dice needs masks of the same size");
    let (mut both, mut na, mut nb) = (0u64, 0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        let (fx, fy) = (x > A::default(), y > B::default());
        na += fx as u64;
        nb += fy as u64;
        both += (fx && fy) as u64;
    }
    if na + nb == 0 {
        1.0
    } else {
        2.0 * both as f64 / (na + nb) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_by_hand() {
        // A = {0,1,2}, B = {1,2,3}: 2*2 / (3+3)
        let a = [1u8, 1, 1, 0, 0];
        let b = [0.0f32, 2.0, 1.0, 5.0, 0.0];
        assert!((dice(&a, &b) - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(dice(&[0u8; 4], &[0u8; 4]), 1.0);
        assert_eq!(dice(&[1u8, 0], &[0u8, 1]), 0.0);
    }
}
