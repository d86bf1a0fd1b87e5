#!/usr/bin/env node
// The fallback engine (a Trunk post_build hook, see Trunk.toml).
//
// Trunk builds the engine with the `relaxed-simd` feature (index.html: data-cargo-features): its
// convolution tile uses f32x4.relaxed_madd, one hardware FMA. But a wasm module that holds a single
// relaxed-SIMD instruction does not compile at all in an engine without relaxed SIMD (Safari,
// Firefox before it shipped), so the page would not start there. This hook builds the same library
// once more without the feature, into bedside_simd128.js + bedside_simd128_bg.wasm next to Trunk's
// bedside.js + bedside_bg.wasm, with the same wasm-bindgen and wasm-opt settings. www/worker.js
// asks the browser (WebAssembly.validate on a 40-byte probe) and loads one or the other.
//
// The two builds share every dependency in the cargo target directory (only the bedside crate's
// features differ), so this costs one more compile of bedside itself, wasm-bindgen and wasm-opt.
//
// Staging dir: $TRUNK_STAGING_DIR (set by Trunk for hooks), else argv[2], else "dist".

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

const root = process.env.TRUNK_SOURCE_DIR || process.cwd();
const staging = process.env.TRUNK_STAGING_DIR || process.argv[2] || path.join(root, 'dist');
const release = (process.env.TRUNK_PROFILE || 'release') === 'release';
const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
const NAME = 'bedside_simd128';

/** A tool's version line, so that a new wasm-bindgen or wasm-opt misses the cache. */
function tool(cmd) {
  const r = spawnSync(cmd, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : `${cmd}?`;
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}`);
}

/** The wasm-opt level index.html gives Trunk's own build, so both engines are optimised alike. */
function wasmOptLevel() {
  const html = fs.readFileSync(path.join(root, 'index.html'), 'utf8');
  const link = html.match(/<link data-trunk rel="rust"[^>]*>/);
  const level = link && link[0].match(/data-wasm-opt="([^"]*)"/);
  return level ? level[1] : '0';
}

try {
  run('cargo', [
    'build', ...(release ? ['--release'] : []), '--target', 'wasm32-unknown-unknown',
    '--no-default-features', '--lib',
  ]);
  const wasm = path.join(targetDir, 'wasm32-unknown-unknown', release ? 'release' : 'debug', 'bedside.wasm');
  const level = wasmOptLevel();
  // wasm-opt -Oz takes minutes on this module: keep the last result, keyed by what made it.
  const key = crypto.createHash('sha256').update(fs.readFileSync(wasm)).update(`${level}|${tool('wasm-bindgen')}|${tool('wasm-opt')}`).digest('hex').slice(0, 16);
  const cache = path.join(targetDir, 'simd128-engine', key);
  const files = [`${NAME}.js`, `${NAME}_bg.wasm`];
  const cached = files.every((f) => fs.existsSync(path.join(cache, f)));
  if (!cached) {
    fs.rmSync(path.join(targetDir, 'simd128-engine'), { recursive: true, force: true });
    fs.mkdirSync(cache, { recursive: true });
    run('wasm-bindgen', ['--target=web', '--no-typescript', `--out-dir=${cache}`, `--out-name=${NAME}`, wasm]);
    const out = path.join(cache, `${NAME}_bg.wasm`);
    if (level !== '0') run('wasm-opt', [`--output=${out}`, `-O${level}`, out]);
  }
  for (const f of files) fs.copyFileSync(path.join(cache, f), path.join(staging, f));
  const size = fs.statSync(path.join(staging, files[1])).size / 1e6;
  console.log(`simd128-engine: wrote ${files.join(' and ')} (${size.toFixed(1)} MB, wasm-opt -O${level}; ${cached ? 'from' : 'kept in'} ${cache})`);
} catch (e) {
  console.error(`simd128-engine: ${e.message}`);
  process.exit(1);
}
