// NiiVue glue for bedside. NiiVue is served from our own origin (dist/vendor/niivue/index.js,
// copied by Trunk from node_modules/@niivue/niivue/dist/index.js: a self-contained ES module with
// no imports, no workers and its font embedded as a data: URI).
//
// The viewer only ever receives ArrayBuffers that are already in this tab; it never fetches.

import { Niivue, NVImage, SHOW_RENDER } from './vendor/niivue/index.js';

export class Viewer {
  constructor(canvas) {
    this.canvas = canvas;
    this.nv = null;
    this.base = null;
    this.overlay = null;
    this.opacity = 0.5;
  }

  /** Attach NiiVue to the canvas. Throws if WebGL2 is unavailable. */
  async init() {
    this.nv = new Niivue({
      dragAndDropEnabled: false, // our own drop zone feeds the worker; NiiVue must not load files itself
      backColor: [0, 0, 0, 1],
      show3Dcrosshair: false,
      isColorbar: false,
      multiplanarShowRender: SHOW_RENDER.NEVER, // three planes: axial, coronal, sagittal
      loadingText: '',
      logLevel: 'warn',
    });
    await this.nv.attachToCanvas(this.canvas);
    this.nv.setSliceType(this.nv.sliceTypeMultiplanar);
  }

  get ready() {
    return this.nv !== null;
  }

  clear() {
    if (!this.nv) return;
    for (const v of [...this.nv.volumes]) this.nv.removeVolume(v);
    this.base = null;
    this.overlay = null;
    this.nv.drawScene();
  }

  /** Show a NIfTI volume (gzip or raw bytes). */
  async showVolume(buffer, name) {
    if (!this.nv) return;
    this.clear();
    const img = await NVImage.new(buffer, withNiftiExt(name));
    this.nv.addVolume(img);
    this.base = img;
    this.nv.setSliceType(this.nv.sliceTypeMultiplanar);
  }

  /**
   * Overlay a label volume. labels: [{value, name, color:[r,g,b]}] from the model; label 0 is
   * transparent.
   */
  async showMask(buffer, labels) {
    if (!this.nv || !this.base) return;
    this.removeMask();
    const img = await NVImage.new(buffer, 'mask.nii.gz');
    img.setColormapLabel(labelColormap(labels));
    img.opacity = this.opacity;
    this.nv.addVolume(img);
    this.overlay = img;
    this.nv.updateGLVolume();
  }

  removeMask() {
    if (!this.nv || !this.overlay) return;
    this.nv.removeVolume(this.overlay);
    this.overlay = null;
    this.nv.drawScene();
  }

  setOpacity(value) {
    this.opacity = value;
    if (!this.nv || !this.overlay) return;
    const idx = this.nv.volumes.indexOf(this.overlay);
    if (idx >= 0) this.nv.setOpacity(idx, value);
  }
}

function withNiftiExt(name) {
  return /\.nii(\.gz)?$/i.test(name) ? name : 'volume.nii.gz';
}

/** Build a NiiVue label colormap (R,G,B,A,I arrays) from the model's label list. */
export function labelColormap(labels) {
  const list = (Array.isArray(labels) && labels.length ? labels : [{ value: 1, name: 'label 1', color: [255, 64, 64] }])
    .filter((l) => Number.isInteger(l.value) && l.value > 0)
    .sort((a, b) => a.value - b.value);
  const cmap = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: ['background'] };
  for (const l of list) {
    const [r, g, b] = Array.isArray(l.color) && l.color.length >= 3 ? l.color : [255, 64, 64];
    cmap.R.push(r);
    cmap.G.push(g);
    cmap.B.push(b);
    cmap.A.push(255);
    cmap.I.push(l.value);
    cmap.labels.push(String(l.name ?? l.value));
  }
  return cmap;
}
