// WebGPU as the engine worker sees it: the adapter's facts (the page's device panel, and a clear
// "WebGPU unavailable" before the engine tries), and every device the engine makes, watched for loss.
// Imported by www/worker.js before the engine loads, so that no device escapes the watch.

// Every GPUDevice this worker makes (Burn's, through wgpu, asks navigator.gpu like any page): a
// lost device never answers again, and wgpu may wait on it forever, so the loss itself must end
// the request that was using it (www/worker.js) instead of whatever the engine would do next.
const devices = new Set();
let lost = null; // {reason, message} of the first lost device: this wasm instance is done with WebGPU
let lostListener = () => {};
let settleLost = () => {};
const lostPromise = new Promise((resolve) => {
  settleLost = resolve;
});

/** The first lost device's {reason, message}, or null. */
export const deviceLost = () => lost;

/** Resolves when a device is lost. */
export const whenDeviceLost = () => lostPromise;

/** Calls `listener(lost)` when a device is lost (one listener: the worker's). */
export function onDeviceLost(listener) {
  lostListener = listener;
}

/** The fault hook: GPUDevice.destroy() on every device this worker made. */
export function destroyDevices() {
  for (const d of devices) d.destroy();
}

/** "The GPU device was lost (reason: message)." */
export function lostMessage() {
  const why = lost.message ? `${lost.reason}: ${lost.message}` : lost.reason;
  return `The GPU device was lost (${why}).`;
}

if (self.GPUAdapter && typeof self.GPUAdapter.prototype.requestDevice === 'function') {
  const requestDevice = self.GPUAdapter.prototype.requestDevice;
  self.GPUAdapter.prototype.requestDevice = async function watchedRequestDevice(...args) {
    const device = await requestDevice.apply(this, args);
    devices.add(device);
    device.lost.then((info) => {
      devices.delete(device);
      lost ??= { reason: info.reason || 'unknown', message: info.message || '' };
      settleLost(lost);
      lostListener(lost);
    });
    return device;
  };
}

const LIMIT_KEYS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxUniformBufferBindingSize',
  'maxBindGroups',
];

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

let gpuInfoPromise = null;

/** WebGPU adapter facts, queried from JS (independent of the engine). */
async function queryGpu() {
  const t0 = performance.now();
  const gpu = self.navigator && self.navigator.gpu;
  if (!gpu) {
    return {
      available: false,
      reason: 'navigator.gpu is not defined (this browser or context has no WebGPU)',
      query_ms: 0,
    };
  }
  let adapter;
  try {
    adapter = await withTimeout(gpu.requestAdapter(), 15000, 'navigator.gpu.requestAdapter()');
  } catch (e) {
    return { available: false, reason: `requestAdapter() failed: ${e?.message || e}`, query_ms: performance.now() - t0 };
  }
  if (!adapter) {
    return {
      available: false,
      reason:
        'navigator.gpu.requestAdapter() returned no adapter (no usable GPU, WebGPU disabled, or a ' +
        'blocklisted driver; Chromium on Linux may need --enable-unsafe-webgpu)',
      query_ms: performance.now() - t0,
    };
  }
  let info = adapter.info;
  if (!info && typeof adapter.requestAdapterInfo === 'function') {
    try {
      info = await adapter.requestAdapterInfo();
    } catch {
      info = {};
    }
  }
  info = info || {};
  const limits = {};
  for (const k of LIMIT_KEYS) if (adapter.limits && k in adapter.limits) limits[k] = adapter.limits[k];
  const allLimits = {};
  for (const k in adapter.limits) {
    const v = adapter.limits[k];
    if (typeof v === 'number') allLimits[k] = v;
  }
  return {
    available: true,
    vendor: info.vendor || '',
    architecture: info.architecture || '',
    device: info.device || '',
    description: info.description || '',
    isFallbackAdapter: Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false),
    features: adapter.features ? [...adapter.features].sort() : [],
    limits,
    allLimits,
    query_ms: performance.now() - t0,
  };
}

export function gpuInfo() {
  if (!gpuInfoPromise) gpuInfoPromise = queryGpu();
  return gpuInfoPromise;
}
