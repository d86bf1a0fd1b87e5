// Tiny static file server for bedside's dist/ (tests and local use).
//
// - Binds to 127.0.0.1 only.
// - Sends the same strict Content-Security-Policy as the <meta> tag in index.html, as a real
//   header, on every response. Workers get their CSP from their own script response (not from
//   the page), so the header is what actually constrains www/worker.js and the wasm in it.
// - Answers only GET and HEAD; records every request (method, path, bytes of request body) so
//   tests can assert that no request ever carried data to the server.
// - Serves .nii.gz / .gz as opaque bytes (no Content-Encoding), so the browser hands the gzip
//   bytes to the app unchanged.
//
// Usage as a program:  node tests/e2e/static_server.mjs [root=dist] [port=8080]
// Usage as a module:   const srv = await startServer({ root: 'dist', port: 0 }); srv.url; await srv.close();

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data: blob:",
  "style-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.map': 'application/json; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.gz': 'application/gzip',
  '.nii': 'application/octet-stream',
  '.safetensors': 'application/octet-stream',
};

function securityHeaders() {
  return {
    'Content-Security-Policy': CSP,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Cache-Control': 'no-store',
  };
}

export async function startServer({ root = 'dist', port = 0, host = '127.0.0.1', quiet = true } = {}) {
  const rootAbs = path.resolve(root);
  const requests = [];

  const server = http.createServer((req, res) => {
    let bodyBytes = 0;
    req.on('data', (chunk) => { bodyBytes += chunk.length; });
    req.on('end', () => {
      const entry = { method: req.method, url: req.url, bodyBytes, status: 0 };
      requests.push(entry);
      const send = (status, headers, body) => {
        entry.status = status;
        res.writeHead(status, { ...securityHeaders(), ...headers });
        res.end(body);
        if (!quiet) console.log(`${req.method} ${req.url} ${status}`);
      };
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        return send(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }, 'method not allowed\n');
      }
      let pathname;
      try {
        pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      } catch {
        return send(400, { 'Content-Type': 'text/plain' }, 'bad request\n');
      }
      if (pathname.includes('\0')) return send(400, { 'Content-Type': 'text/plain' }, 'bad request\n');
      let file = path.join(rootAbs, pathname);
      if (file !== rootAbs && !file.startsWith(rootAbs + path.sep)) {
        return send(403, { 'Content-Type': 'text/plain' }, 'forbidden\n');
      }
      fs.stat(file, (err, st) => {
        if (!err && st.isDirectory()) {
          file = path.join(file, 'index.html');
          try { st = fs.statSync(file); err = null; } catch (e) { err = e; }
        }
        if (err || !st.isFile()) return send(404, { 'Content-Type': 'text/plain' }, 'not found\n');
        const ext = path.extname(file).toLowerCase();
        const headers = {
          'Content-Type': MIME[ext] || 'application/octet-stream',
          'Content-Length': String(st.size),
        };
        entry.status = 200;
        res.writeHead(200, { ...securityHeaders(), ...headers });
        if (req.method === 'HEAD') return res.end();
        const stream = fs.createReadStream(file);
        stream.on('error', () => res.destroy());
        stream.pipe(res);
        if (!quiet) console.log(`${req.method} ${req.url} 200`);
      });
    });
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const addr = server.address();
  const url = `http://${host}:${addr.port}`;
  return {
    url,
    port: addr.port,
    requests,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = process.argv[2] || 'dist';
  const port = Number(process.argv[3] || process.env.PORT || 8080);
  if (!fs.existsSync(root)) {
    console.error(`static_server: ${root} does not exist (run trunk build first)`);
    process.exit(1);
  }
  const srv = await startServer({ root, port, quiet: false });
  console.log(`bedside: serving ${path.resolve(root)} at ${srv.url}/ (CSP: ${CSP})`);
}
