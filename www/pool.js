// The engine worker's pool of helper workers: every core for one segmentation. A wasm instance
// has one thread, so N helpers (each this same worker.js, with its own wasm instance and its own
// copy of the model, on the CPU) run network passes in parallel while the engine worker keeps the
// volume, cuts the windows and blends the results (src/web/pool.rs). Runs inside the engine
// worker; nested workers end with it, so cancelling (terminating the engine) ends them too.
//
// Protocol (engine -> helper):                 (helper -> engine)
//   {type:'pool-load', id, model, ensemble, cpuConv}  {type:'reply', id, result:{memory_mb}}
//   {type:'pool-pass', id, member, shape, patch, mirror}
//                                                {type:'reply', id, result:{probs, memory_mb, conv_ms}} (probs transferred)
//   any failure                                  {type:'error', id, message}
// Patches travel by transfer between workers of this origin; nothing leaves the machine.

export class Pool {
  /**
   * @param {number} size the most helpers; @param {string} key what they hold (model, ensemble,
   * convolution); @param {object} load the 'pool-load' fields each helper starts with.
   */
  constructor(size, key, load) {
    this.size = size;
    this.key = key;
    this.load = load;
    this.helpers = [];
    this.pending = new Map(); // id -> {resolve, reject}
    this.next = 1;
    this.memoryMb = []; // each helper's wasm memory: it only grows, so its peak
    this.convMs = 0; // milliseconds all helpers spent in CPU convolutions
    this.failure = null;
  }

  /**
   * Start helpers, up to `count` in all, and load the model in each (in parallel). A run starts
   * no more helpers than it has passes: each holds a whole model and a window's activations
   * (about 1.7 GB for HD-BET), so idle ones would only cost memory.
   */
  async grow(count) {
    const fresh = [];
    for (let i = this.helpers.length; i < Math.min(count, this.size); i++) {
      // The engine's own query (?engine=…), so every helper loads the engine build it loaded.
      const helper = new Worker(new URL(`./worker.js${self.location.search}`, import.meta.url), { type: 'module', name: `bedside-pool-${i + 1}` });
      helper.onmessage = (ev) => this.#reply(ev.data);
      helper.onerror = (ev) => {
        ev.preventDefault?.();
        this.#failAll(`pool worker ${i + 1} crashed: ${ev.message || 'no detail'}`);
      };
      this.helpers.push(helper);
      this.memoryMb.push(0);
      fresh.push([i, helper]);
    }
    const loaded = await Promise.all(fresh.map(([, h]) => this.#call(h, { type: 'pool-load', ...this.load })));
    loaded.forEach((r, k) => (this.memoryMb[fresh[k][0]] = r.memory_mb));
  }

  /** Run passes ({member, shape, patch, mirror}); resolve to their probabilities, in order. */
  async run(passes) {
    if (this.failure) throw new Error(this.failure);
    await this.grow(passes.length);
    const results = new Array(passes.length);
    let nextPass = 0;
    const drain = async (helper, index) => {
      while (nextPass < passes.length) {
        const k = nextPass++;
        const { member, shape, patch, mirror } = passes[k];
        const r = await this.#call(helper, { type: 'pool-pass', member, shape, patch, mirror }, [patch.buffer]);
        this.memoryMb[index] = Math.max(this.memoryMb[index], r.memory_mb);
        this.convMs += r.conv_ms;
        results[k] = r.probs;
      }
    };
    return Promise.all(this.helpers.map(drain)).then(() => results);
  }

  terminate() {
    for (const h of this.helpers) h.terminate();
    this.helpers = [];
    this.#failAll('the pool was closed');
  }

  #call(helper, msg, transfer = []) {
    const id = `pool-${this.next++}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      helper.postMessage({ ...msg, id }, transfer);
    });
  }

  #reply(msg) {
    const waiting = msg && this.pending.get(msg.id);
    if (!waiting) return; // progress messages of the model load
    if (msg.type === 'reply') {
      this.pending.delete(msg.id);
      waiting.resolve(msg.result);
    } else if (msg.type === 'error') {
      this.pending.delete(msg.id);
      waiting.reject(new Error(msg.message));
    }
  }

  #failAll(why) {
    this.failure = this.failure || why;
    for (const p of this.pending.values()) p.reject(new Error(why));
    this.pending.clear();
  }
}
