#!/usr/bin/env node
// CSP post-build step for bedside (runs as a Trunk post_build hook, see Trunk.toml; can also be
// run by hand: `node www/build/csp-postprocess.mjs dist`).
//
// The page ships with a strict Content-Security-Policy (`script-src 'self' 'wasm-unsafe-eval'`,
// `style-src 'self'`): no inline script or style may run. Trunk 0.21's Rust pipeline normally
// injects an INLINE <script type="module"> that imports the wasm-bindgen JS and calls init(); the
// CSP would block it. bedside avoids it at the source: Trunk.toml sets `inject_scripts = false`,
// so Trunk writes bedside.js and bedside_bg.wasm (fixed names, filehash = false) and injects
// nothing; the module Web Worker www/worker.js imports ./bedside.js itself.
//
// This script is the guard that keeps it that way:
//   0. It removes the inert <link data-trunk rel="rust" ...> that inject_scripts = false leaves
//      behind (it names Cargo.toml; no browser fetches rel="rust", but it has no business in dist).
//   1. Any inline <script> (one with content and no src) in index.html is moved into an external
//      file `inline-<sha256-prefix>.js` next to it and replaced by <script src=...>, keeping its
//      type. So even if inject_scripts is turned back on, the page still runs under the same CSP
//      without 'unsafe-inline' or hashes.
//   2. It fails (exit 1) on things it cannot fix safely: inline <style> blocks, style="..."
//      attributes, on*="..." event-handler attributes, javascript: URLs, or a missing/changed
//      CSP <meta> tag.
//
// Input dir: $TRUNK_STAGING_DIR (set by Trunk for hooks), else argv[2], else "dist".

import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

export const EXPECTED_CSP =
  "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; " +
  "img-src 'self' data: blob:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'";

export function processHtml(html) {
  const problems = [];
  const extracted = []; // { name, code }

  // HTML comments are inert: park them so their text is not mistaken for markup.
  const comments = [];
  html = html.replace(/<!--[\s\S]*?-->/g, (c) => `\u0000comment${comments.push(c) - 1}\u0000`);

  // 0. Leftover Trunk link elements (kept by Trunk when inject_scripts = false).
  html = html.replace(/[ \t]*<link\b[^>]*\bdata-trunk\b[^>]*>[ \t]*\n?/gi, '');

  // 1. Externalise inline scripts.
  const scriptRe = /<script\b([^>]*)>([\s\S]*?)<\/script\s*>/gi;
  html = html.replace(scriptRe, (whole, attrs, body) => {
    if (/\bsrc\s*=/i.test(attrs)) {
      if (body.trim() !== '') problems.push('a <script src=...> element also has inline content');
      return whole;
    }
    if (body.trim() === '') return whole;
    const typeMatch = attrs.match(/\btype\s*=\s*("([^"]*)"|'([^']*)'|([^\s>]+))/i);
    const type = typeMatch ? (typeMatch[2] ?? typeMatch[3] ?? typeMatch[4]) : '';
    if (type && !/^(module|text\/javascript|application\/javascript)$/i.test(type)) {
      // Data blocks (e.g. application/json, importmap) are not executed as script; an importmap
      // would be, so refuse it.
      if (/^importmap$/i.test(type)) problems.push('inline importmap is not allowed under the CSP');
      return whole;
    }
    const hash = crypto.createHash('sha256').update(body).digest('hex').slice(0, 16);
    const name = `inline-${hash}.js`;
    extracted.push({ name, code: body.replace(/^\s*\n/, '') });
    // Drop nonce/integrity (they described the inline text), keep type and other attributes.
    const keptAttrs = attrs
      .replace(/\s+nonce\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)/gi, '')
      .replace(/\s+integrity\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)/gi, '');
    return `<script${keptAttrs} src="./${name}"></script>`;
  });

  // 2. Things we refuse rather than fix.
  const withoutScripts = html.replace(scriptRe, '');
  if (/<style\b/i.test(withoutScripts)) problems.push('inline <style> element (blocked by style-src \'self\')');
  const tagRe = /<([a-zA-Z][\w-]*)\b([^>]*)>/g;
  let m;
  while ((m = tagRe.exec(withoutScripts)) !== null) {
    const [, tag, attrs] = m;
    if (/\sstyle\s*=/i.test(attrs)) problems.push(`style="" attribute on <${tag}> (blocked by style-src 'self')`);
    const ev = attrs.match(/\s(on[a-z]+)\s*=/i);
    if (ev) problems.push(`inline event handler ${ev[1]}= on <${tag}> (blocked by script-src 'self')`);
    if (/=\s*["']?\s*javascript:/i.test(attrs)) problems.push(`javascript: URL on <${tag}>`);
  }

  // 3. The CSP meta tag must be present and unchanged.
  const meta = html.match(/<meta\b[^>]*http-equiv\s*=\s*["']?Content-Security-Policy["']?[^>]*>/i);
  if (!meta) {
    problems.push('missing <meta http-equiv="Content-Security-Policy">');
  } else {
    const content = meta[0].match(/\bcontent\s*=\s*"([^"]*)"/i)?.[1];
    if (content !== EXPECTED_CSP) {
      problems.push(`CSP meta content differs from the expected policy:\n    got:      ${content}\n    expected: ${EXPECTED_CSP}`);
    }
  }

  html = html.replace(/\u0000comment(\d+)\u0000/g, (_, i) => comments[Number(i)]);
  return { html, extracted, problems };
}

function main() {
  const dir = process.env.TRUNK_STAGING_DIR || process.argv[2] || 'dist';
  // Every page we serve: the main page and the teach room (copied as a file, so checked here too).
  for (const page of ['index.html', 'teach.html']) {
    const file = path.join(dir, page);
    if (!fs.existsSync(file)) {
      console.error(`csp-postprocess: ${file} not found`);
      process.exit(1);
    }
    const { html, extracted, problems } = processHtml(fs.readFileSync(file, 'utf8'));
    for (const { name, code } of extracted) {
      fs.writeFileSync(path.join(dir, name), code);
      console.log(`csp-postprocess: moved an inline <script> to ${name}`);
    }
    if (problems.length) {
      console.error(`csp-postprocess: ${file} violates the page's CSP:`);
      for (const p of problems) console.error(`  - ${p}`);
      process.exit(1);
    }
    fs.writeFileSync(file, html);
    console.log(`csp-postprocess: ${file} OK (no inline script or style; CSP meta present)`);
  }
}

if (import.meta.url === `file://${path.resolve(process.argv[1] || '')}`) main();
