// The engine worker's lifecycle and its message protocol, page-independent: a page (index.html
// now, a teach.html later) makes one Engine with its own handlers and hooks. The protocol itself
// (message types and fields) is documented at the top of www/worker.js.
//
// - start(): a module Worker; the page's onStarting hook runs first (reset what the old engine
//   knew), onStarted after (post the first requests, e.g. {type:'init'}).
// - post(msg, transfer): a request. Replies are dispatched by `type` to handlers[type](msg);
//   unknown types are ignored. Matching a reply to its request (`id`) is the page's business:
//   it knows which request is current.
// - Replies from a worker that has since been replaced (restart, cancel) are dropped: a terminated
//   worker's late messages must not touch the page.
// - A crash (an error outside any request, or an unreadable message) calls onCrash(message); the
//   page decides whether to restart. Terminating is the only way to stop a running wasm call, so
//   restart() is also how a page cancels.

/** The worker's URL, carrying the page's `?engine=simd128` when it has one: that makes the worker
 * load the fallback engine without relaxed SIMD (www/worker.js), so a test or a benchmark can run
 * it in a browser that has relaxed SIMD. */
function engineUrl(url) {
  const asked = new URLSearchParams(location.search).get('engine');
  return asked ? `${url}?engine=${encodeURIComponent(asked)}` : url;
}

export class Engine {
  /**
   * @param {object} options
   * @param {string} [options.url] the worker script, resolved against the page's URL
   * @param {string} [options.name] the worker's name (shown in the browser's dev tools)
   * @param {Record<string, (msg: object) => void>} [options.handlers] reply handlers by `type`
   * @param {() => void} [options.onStarting] before a worker is made
   * @param {(engine: Engine) => void} [options.onStarted] after it is made
   * @param {(error: Error) => void} [options.onStartFailed] the Worker constructor threw
   * @param {(message: string) => void} [options.onCrash] the worker crashed or sent garbage
   */
  constructor(options = {}) {
    this.url = './worker.js';
    this.name = 'bedside-engine';
    this.handlers = {};
    this.onStarting = null;
    this.onStarted = null;
    this.onStartFailed = null;
    this.onCrash = null;
    this.worker = null;
    this.calls = new Map(); // id -> {resolve, reject}: requests made with call()
    this.newest = new Map(); // type -> the newest latest() call's number
    this.nextCall = 1;
    this.configure(options);
  }

  /** Set handlers and hooks after construction (a page wires its panels before it starts). */
  configure(options) {
    const { handlers, ...rest } = options;
    Object.assign(this, rest);
    if (handlers) this.handlers = { ...this.handlers, ...handlers };
    return this;
  }

  /** True while a worker exists (it may still be loading the wasm). */
  get running() {
    return this.worker !== null;
  }

  start() {
    this.onStarting?.();
    let worker;
    try {
      worker = new Worker(engineUrl(this.url), { type: 'module', name: this.name });
    } catch (e) {
      this.onStartFailed?.(e);
      return;
    }
    this.worker = worker;
    worker.onmessage = (ev) => this.#dispatch(worker, ev.data);
    worker.onerror = (ev) => {
      if (worker !== this.worker) return;
      ev.preventDefault?.();
      const detail = ev.message ? `${ev.message}${ev.filename ? ` (${ev.filename}:${ev.lineno})` : ''}` : 'the worker script failed to load or threw outside a task';
      this.onCrash?.(`The engine worker crashed: ${detail}.`);
    };
    worker.onmessageerror = () => {
      if (worker !== this.worker) return;
      this.onCrash?.('The engine worker sent a message that could not be read.');
    };
    this.onStarted?.(this);
  }

  /** Start a worker unless one is running (after a failed start, the next request tries again). */
  ensureStarted() {
    if (!this.worker) this.start();
  }

  /** Terminate the worker (and whatever it is computing) and start a fresh one. */
  restart() {
    if (this.worker) this.worker.terminate();
    this.worker = null;
    this.#dropCalls('the engine was restarted');
    this.start();
  }

  /**
   * A request answered by one reply with its id (`{type:'reply', id, result}`, as the
   * training messages in www/worker_train.js answer) or by an error with its id: a promise of the
   * result. Progress messages on the way still go to handlers.progress.
   */
  call(type, payload = {}, transfer = []) {
    this.ensureStarted();
    const id = `call-${this.nextCall++}`;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.post({ type, id, ...payload }, transfer);
    });
  }

  /**
   * call() for requests whose newest answer alone matters (judging again as an input moves): a
   * promise of the result, or of undefined when a newer latest() of the same type was made before
   * this one's answer came. Errors reject as call()'s do.
   */
  async latest(type, payload = {}) {
    const ticket = (this.newest.get(type) ?? 0) + 1;
    this.newest.set(type, ticket);
    const result = await this.call(type, payload);
    return this.newest.get(type) === ticket ? result : undefined;
  }

  #dropCalls(why) {
    for (const c of this.calls.values()) c.reject(new Error(why));
    this.calls.clear();
  }

  /** Send a request; `transfer` lists the ArrayBuffers handed over (no copy, unusable here after). */
  post(msg, transfer) {
    // No guard: posting with no worker is a bug in the caller, and throws as it did before.
    this.worker.postMessage(msg, transfer || []);
  }

  #dispatch(worker, msg) {
    if (worker !== this.worker || !msg) return; // a terminated worker's late messages
    const pending = msg.id != null && (msg.type === 'reply' || msg.type === 'error') ? this.calls.get(msg.id) : null;
    if (pending) {
      this.calls.delete(msg.id);
      if (msg.type === 'error') pending.reject(new Error(msg.message));
      else pending.resolve(msg.result);
      return;
    }
    if (Object.hasOwn(this.handlers, msg.type)) this.handlers[msg.type](msg);
  }
}
