// The two engine builds (no browser needed): dist/bedside_bg.wasm holds the relaxed-SIMD FMA
// convolution, dist/bedside_simd128_bg.wasm does not. A wasm engine without relaxed SIMD cannot
// compile the first at all, so www/worker.js asks WebAssembly.validate about a 35-byte probe and
// loads the second there. Node's V8 can switch relaxed SIMD off and on, which makes it both kinds
// of engine; these tests check, in each, that the probe's answer is exactly whether the main build
// compiles, and that the fallback compiles in both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO } from './lib.mjs';

const dist = path.resolve(REPO, process.env.BEDSIDE_DIST || 'dist');

/** The probe bytes the shipped worker uses (the array literal in dist/worker.js). */
function shippedProbe() {
  const src = fs.readFileSync(path.join(dist, 'worker.js'), 'utf8');
  const m = src.match(/const RELAXED_SIMD_PROBE = new Uint8Array\(\[([\s\S]*?)\]\);/);
  assert.ok(m, 'dist/worker.js defines RELAXED_SIMD_PROBE');
  return m[1].replace(/\/\/.*$/gm, '').split(',').map((s) => s.trim()).filter(Boolean).map(Number);
}

/** What WebAssembly.validate says of the probe and of each build, in a V8 with relaxed SIMD on or off. */
function validateIn(relaxed) {
  const script = `
    const fs = require('fs');
    const probe = new Uint8Array(${JSON.stringify(shippedProbe())});
    const v = (f) => WebAssembly.validate(fs.readFileSync(f));
    console.log(JSON.stringify({ probe: WebAssembly.validate(probe), main: v(process.argv[1]), fallback: v(process.argv[2]) }));`;
  const flag = relaxed ? '--experimental-wasm-relaxed-simd' : '--no-experimental-wasm-relaxed-simd';
  const r = spawnSync(process.execPath, [flag, '-e', script, path.join(dist, 'bedside_bg.wasm'), path.join(dist, 'bedside_simd128_bg.wasm')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('without relaxed SIMD the probe and the main build fail to validate, and the fallback validates', () => {
  assert.deepEqual(validateIn(false), { probe: false, main: false, fallback: true });
});

test('with relaxed SIMD the probe and both builds validate', () => {
  assert.deepEqual(validateIn(true), { probe: true, main: true, fallback: true });
});
