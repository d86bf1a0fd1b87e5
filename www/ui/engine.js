// This page's one engine (the wasm in www/worker.js). The panels post requests through it;
// www/app.js registers the reply handlers and lifecycle hooks and starts it.

import { Engine } from './rpc.js';

export const engine = new Engine({ url: './worker.js', name: 'bedside-engine' });
