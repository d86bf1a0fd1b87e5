// The page's NiiVue viewers: the main one (Viewer panel) and the pair Compare shows side by side,
// plus the opacity slider that drives them all. The NiiVue glue itself is www/viewer.js.
//
// viewer.js is imported dynamically, not statically: if NiiVue cannot load or WebGL2 is missing,
// only the pictures are lost; the rest of the page (segmentation, Save, Compare's numbers) works.

import { el } from './state.js';

let viewer = null; // the main Viewer, once it initialised
let compareViewers = null; // [left, right] Viewer instances, made on first use

export async function initViewer() {
  try {
    const { Viewer } = await import('../viewer.js');
    const v = new Viewer(el.canvas);
    await v.init();
    viewer = v;
    v.setOpacity(Number(el.opacity.value));
  } catch (e) {
    viewer = null;
    el.viewerInfo.textContent = `Viewer unavailable (needs WebGL2): ${e.message || e}. Segmentation still works.`;
  }
}

/** Show a loaded volume in the main viewer (a copy of its bytes: NiiVue keeps what it gets). */
export async function showVolume(bytes, name) {
  if (!viewer) return;
  try {
    await viewer.showVolume(bytes.slice(0), name);
    el.viewerInfo.textContent = '';
  } catch (e) {
    el.viewerInfo.textContent = `The viewer could not display this volume: ${e.message || e}`;
  }
}

/**
 * Overlay a mask on the main viewer. `clearInfo`: also clear an earlier viewer message on success
 * (a single run does; Compare, as before the split, leaves the line as it is).
 */
export async function showMask(mask, labels, { clearInfo = true } = {}) {
  if (!viewer) return;
  try {
    await viewer.showMask(mask.slice(0), labels);
    if (clearInfo) el.viewerInfo.textContent = '';
  } catch (e) {
    el.viewerInfo.textContent = `The viewer could not display the mask: ${e.message || e}`;
  }
}

export function removeMask() {
  if (viewer) viewer.removeMask();
}

/** The volume with one mask in each of Compare's two viewers. Throws if they cannot be shown. */
export async function showComparePair(volume, [leftMask, rightMask], labels) {
  if (!compareViewers) {
    const { Viewer } = await import('../viewer.js');
    const views = [new Viewer(el.compareLeft), new Viewer(el.compareRight)];
    for (const v of views) await v.init();
    compareViewers = views;
  }
  const [left, right] = compareViewers;
  for (const [v, mask] of [[left, leftMask], [right, rightMask]]) {
    await v.showVolume(volume.bytes.slice(0), volume.name);
    v.setOpacity(Number(el.opacity.value));
    await v.showMask(mask.slice(0), labels);
  }
}

export function wireViewers() {
  el.opacity.addEventListener('input', () => {
    const v = Number(el.opacity.value);
    el.opacityValue.textContent = v.toFixed(2);
    viewer?.setOpacity(v);
    for (const cv of compareViewers || []) cv.setOpacity(v);
  });
}
