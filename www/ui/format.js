// Number and name formatting shared by the panels. Display only: every number shown here was
// computed by the engine (www/worker.js and the wasm) or measured by the page.

/** A number for display: integers and values ≥ 1000 rounded with thousands separators, others
 * with `digits` decimals; non-finite values as JavaScript prints them. */
export function fmt(x, digits = 1) {
  if (!Number.isFinite(x)) return String(x);
  return Math.abs(x) >= 1000 || Number.isInteger(x) ? Math.round(x).toLocaleString('en-US') : x.toFixed(digits);
}

/** The user-facing name of a backend id ('webgpu', 'cpu'). */
export function backendName(b) {
  return b === 'webgpu' ? 'WebGPU' : b === 'cpu' ? 'CPU' : String(b);
}

/** A WebGPU limit for the device panel: sizes of 1 MiB and more also in MiB. */
export function formatLimit(k, v) {
  if (/Size$/.test(k) && v >= 1024 * 1024) return `${v.toLocaleString('en-US')} (${(v / 2 ** 20).toFixed(0)} MiB)`;
  return Number(v).toLocaleString('en-US');
}

/** An engine message about the file `name`, without the name when it begins with it (the page
 * names the file already: "Could not read x.dcm: x.dcm: …" would say it twice). */
export function unprefixed(message, name) {
  const text = String(message ?? '');
  return text.startsWith(`${name}: `) ? text.slice(name.length + 2) : text;
}
