// Device panel (what WebGPU offers here, the backend in use) and the Copy diagnostics button.
// Diagnostics hold no image data and no file name: enough to reproduce a timing, nothing more.

import { FRONTEND_VERSION, el, state, selectedModel } from './state.js';
import { backendName, formatLimit } from './format.js';
import { setStatus } from './progress.js';

export function renderDevice() {
  const d = state.device;
  if (!d) return;
  if (!d.available) {
    const p = document.createElement('p');
    p.textContent = `WebGPU unavailable: ${d.reason}`;
    el.device.replaceChildren(p, backendLine());
    return;
  }
  const dl = document.createElement('dl');
  dl.className = 'kv';
  const add = (k, v) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dl.append(dt, dd);
  };
  add('Adapter', d.description || d.device || '(name hidden by the browser)');
  add('Vendor', d.vendor || '–');
  add('Architecture', d.architecture || '–');
  add('isFallbackAdapter', String(d.isFallbackAdapter));
  for (const [k, v] of Object.entries(d.limits || {})) add(k, formatLimit(k, v));
  el.device.replaceChildren(dl, backendLine());
}

function backendLine() {
  const p = document.createElement('p');
  p.className = 'info';
  p.id = 'device-backend';
  p.textContent = state.selection
    ? `Backend in use: ${backendName(state.selection.backend)}`
    : 'Backend in use: not chosen yet (chosen at the first run)';
  return p;
}

function diagnostics() {
  const s = state.selection;
  const m = state.modelInfo;
  return {
    app: 'bedside',
    app_version: state.engineVersion,
    cpu_engine: state.cpuLanes,
    frontend_version: FRONTEND_VERSION,
    user_agent: navigator.userAgent,
    hardware_concurrency: navigator.hardwareConcurrency ?? null,
    device_memory_gb: navigator.deviceMemory ?? null,
    backend: s
      ? { preference: state.selectionPreference, in_use: s.backend, reason: s.reason, webgpu_error: s.webgpu_error ?? null }
      : { preference: el.backend.value, in_use: null },
    probe_ms: s ? s.probe_ms ?? null : null,
    webgpu: state.device
      ? state.device.available
        ? {
            available: true,
            vendor: state.device.vendor,
            architecture: state.device.architecture,
            device: state.device.device,
            description: state.device.description,
            isFallbackAdapter: state.device.isFallbackAdapter,
            limits: state.device.allLimits || state.device.limits,
            features: state.device.features,
          }
        : { available: false, reason: state.device.reason }
      : null,
    model: m
      ? { id: m.id, name: m.name, params: m.params, flops: m.flops, patch_size: m.patch_size, target_spacing: m.target_spacing }
      : { id: selectedModel()?.id ?? null },
    timings_ms: state.result ? state.result.timings_ms : null,
    workers: state.workers,
    last_run_workers: state.lastWorkers,
    // Geometry only (no pixel values, no file name, no volumes): enough to reproduce a timing.
    volume_geometry: state.volume ? { dims: state.volume.info.dims, spacing: state.volume.info.spacing } : null,
  };
}

async function copyDiagnostics() {
  const text = JSON.stringify(diagnostics(), null, 2);
  el.diagOutput.textContent = text;
  el.diagDetails.hidden = false;
  try {
    await navigator.clipboard.writeText(text);
    setStatus('Diagnostics copied to the clipboard (no image data).');
  } catch {
    el.diagDetails.open = true;
    setStatus('Could not use the clipboard; the diagnostics are shown below for copying.');
  }
}

export function wireDevice() {
  el.copyDiag.addEventListener('click', copyDiagnostics);
  el.workers.value = String(state.workers);
  el.workers.addEventListener('change', () => {
    const n = Math.floor(Number(el.workers.value));
    state.workers = Number.isFinite(n) && n >= 1 ? Math.min(n, 64) : navigator.hardwareConcurrency || 1;
    el.workers.value = String(state.workers);
    renderWorkers();
  });
  renderWorkers();
}

/** How many workers a CPU run uses, and what the last run's workers held at their peak. */
export function renderWorkers() {
  const cores = navigator.hardwareConcurrency || 1;
  const last = state.lastWorkers;
  const peak = last ? ` Last run: ${last.workers} worker${last.workers > 1 ? 's' : ''}, peak wasm memory ${last.memory_mb.map((m) => `${m.toFixed(0)}`).join(' / ')} MB (engine${last.workers > 1 ? ' / each helper' : ''}).` : '';
  const capped = last && last.memory_cap != null && last.memory_cap < state.workers ? ` This model fits ${last.memory_cap} in half of the memory the browser reports.` : '';
  const lanes = { 'relaxed-simd': ' CPU engine: relaxed SIMD (fused multiply-add).', simd128: ' CPU engine: SIMD128 (this browser has no relaxed SIMD, so convolutions run without fused multiply-add).' }[state.cpuLanes] ?? '';
  el.workersNote.dataset.memoryMb = last ? JSON.stringify(last.memory_mb) : '';
  el.workersNote.textContent = `This machine reports ${cores} core${cores > 1 ? 's' : ''}; CPU runs use ${state.workers}.${peak}${capped}${lanes}`;
}

/** What the engine found out about WebGPU here. */
export function onDevice(msg) {
  state.device = msg.info;
  renderDevice();
}

/** The engine could not query WebGPU: the panel says why. */
export function onDeviceError(msg) {
  state.device = { available: false, reason: msg.message };
  renderDevice();
}
