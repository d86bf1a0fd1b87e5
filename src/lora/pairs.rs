//! Which dropped file is an image and which is its mask. The page's Adapt
//! panel takes the user's labelled scans as one pile of NIfTI files (an
//! image and its mask each, in any order and under any names: a site's
//! masks are rarely named after their images, and SPM's avg152 heads share
//! one `brainmask`). A file is a mask when it holds a handful of whole,
//! non-negative values (labels); each mask pairs with the one image on its
//! grid. The CLI names its pairs (`IMAGE:MASK`) and does not need this.

use super::train::mask_labels;
use crate::distill::DistillError;
use crate::volume::Volume;

/// A label volume holds at most this many distinct values (a brain mask: 2).
/// An MR image, even one stored as bytes, holds hundreds.
const MAX_LABELS: usize = 16;

/// Whether `v` looks like a label volume rather than an image.
pub fn is_mask(v: &Volume) -> bool {
    let mut seen: Vec<f32> = Vec::with_capacity(MAX_LABELS + 1);
    for &x in &v.data {
        if !(x >= 0.0 && x.fract() == 0.0) {
            return false;
        }
        if !seen.contains(&x) {
            seen.push(x);
            if seen.len() > MAX_LABELS {
                return false;
            }
        }
    }
    true
}

/// Same grid: the same dims and the same voxel-to-world transform (to
/// 1e-3 mm, what survives a round trip through float32 header fields).
fn same_grid(a: &Volume, b: &Volume) -> bool {
    a.dims == b.dims && a.affine.iter().flatten().zip(b.affine.iter().flatten()).all(|(x, y)| (x - y).abs() < 1e-3)
}

/// Images with their masks (`labels > 0`), from named volumes in any order,
/// and the images left without a mask when `unlabelled_allowed` (a teacher
/// labels them). Refused, with the files named: no mask, an image without a
/// mask (unless allowed) or a mask without an image, and two images on one
/// mask's grid (which is whose cannot be told).
pub fn pair_images_and_masks(files: Vec<(String, Volume)>, unlabelled_allowed: bool) -> Result<(Vec<(Volume, Vec<u8>)>, Vec<Volume>), DistillError> {
    let refuse = |m: String| Err(DistillError::Volume(m));
    let (masks, images): (Vec<_>, Vec<_>) = files.into_iter().partition(|(_, v)| is_mask(v));
    if masks.is_empty() {
        return refuse("no mask among the files: give each image with its mask (a label volume of 0 and 1, on the image's grid)".into());
    }
    let mut taken = vec![false; images.len()];
    let mut pairs = Vec::with_capacity(masks.len());
    for (mask_name, mask) in &masks {
        let on_grid: Vec<usize> = (0..images.len()).filter(|&i| same_grid(&images[i].1, mask)).collect();
        let image = match on_grid.as_slice() {
            [] => return refuse(format!("the mask {mask_name} ({:?}) has no image on its grid among the files", mask.dims)),
            [i] => *i,
            many => {
                let names: Vec<&str> = many.iter().map(|&i| images[i].0.as_str()).collect();
                return refuse(format!("the mask {mask_name} fits {}: give one image per mask", names.join(" and ")));
            }
        };
        if std::mem::replace(&mut taken[image], true) {
            return refuse(format!("{} has more than one mask among the files", images[image].0));
        }
        pairs.push((image, mask_labels(&images[image].1, mask)?));
    }
    if let Some(i) = taken.iter().position(|t| !t).filter(|_| !unlabelled_allowed) {
        return refuse(format!("{} has no mask on its grid among the files (without a teacher, every image needs one)", images[i].0));
    }
    let mut images: Vec<Option<Volume>> = images.into_iter().map(|(_, v)| Some(v)).collect();
    let labelled = pairs.into_iter().map(|(i, labels)| (images[i].take().expect("each image pairs once"), labels)).collect();
    Ok((labelled, images.into_iter().flatten().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(dims: [usize; 3], shift: f64, data: Vec<f32>) -> Volume {
        let affine = [[1.0, 0.0, 0.0, shift], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
        Volume::from_array(dims, [1.0; 3], affine, data).unwrap()
    }
    /// An image of 64 grey levels (stored as whole numbers, as avg152's bytes are).
    fn image(dims: [usize; 3], shift: f64) -> Volume {
        volume(dims, shift, (0..dims.iter().product::<usize>()).map(|i| (i % 64) as f32).collect())
    }
    fn mask(dims: [usize; 3], shift: f64) -> Volume {
        volume(dims, shift, (0..dims.iter().product::<usize>()).map(|i| (i % 3 == 0) as u8 as f32).collect())
    }

    #[test]
    fn masks_pair_with_the_image_on_their_grid_whatever_the_order_and_names() {
        let (a, b) = ([4, 4, 4], [5, 4, 4]);
        let files = vec![
            ("brainmask.nii".to_string(), mask(b, 0.0)),
            ("pd.nii".to_string(), image(a, 0.0)),
            ("seg.nii".to_string(), mask(a, 0.0)),
            ("t1.nii".to_string(), image(b, 0.0)),
        ];
        let (pairs, unlabelled) = pair_images_and_masks(files, false).unwrap();
        assert!(unlabelled.is_empty());
        assert_eq!(pairs.iter().map(|(v, _)| v.dims).collect::<Vec<_>>(), [b, a]);
        assert_eq!(pairs[1].1.iter().filter(|&&l| l == 1).count(), 22, "labels > 0 of the mask on the image's grid");
        assert!(is_mask(&mask(a, 0.0)) && !is_mask(&image(a, 0.0)));
        assert!(!is_mask(&volume([2, 1, 1], 0.0, vec![0.0, 0.5])), "fractions are intensities");
    }

    #[test]
    fn unpaired_or_ambiguous_files_are_refused_by_name() {
        let a = [4, 4, 4];
        let err = |files: Vec<(&str, Volume)>| {
            pair_images_and_masks(files.into_iter().map(|(n, v)| (n.to_string(), v)).collect(), false).unwrap_err().to_string()
        };
        assert!(err(vec![("pd.nii", image(a, 0.0))]).contains("no mask among the files"));
        assert!(err(vec![("pd.nii", image(a, 0.0)), ("m.nii", mask(a, 5.0))]).contains("the mask m.nii ([4, 4, 4]) has no image on its grid"));
        assert!(err(vec![("pd.nii", image(a, 0.0)), ("t2.nii", image(a, 0.0)), ("m.nii", mask(a, 0.0))]).contains("fits pd.nii and t2.nii"));
        assert!(err(vec![("pd.nii", image(a, 0.0)), ("m.nii", mask(a, 0.0)), ("t1.nii", image([5, 4, 4], 0.0))]).contains("t1.nii has no mask"));
        assert!(err(vec![("pd.nii", image(a, 0.0)), ("m.nii", mask(a, 0.0)), ("n.nii", mask(a, 0.0))]).contains("pd.nii has more than one mask"));
        // With a teacher, an image without a mask is an unlabelled volume.
        let files = vec![("pd.nii".to_string(), image(a, 0.0)), ("m.nii".to_string(), mask(a, 0.0)), ("t1.nii".to_string(), image([5, 4, 4], 0.0))];
        let (pairs, unlabelled) = pair_images_and_masks(files, true).unwrap();
        assert_eq!((pairs.len(), unlabelled.len(), unlabelled[0].dims), (1, 1, [5, 4, 4]));
    }
}
