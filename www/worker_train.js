// Training in the engine worker (imported by worker.js): the teach room's messages, the
// Compress panel's recovery and the Adapt panel. Each is a request {type:'teach-…' | 'recover-…' |
// 'adapt-…', id, …} answered by {type:'reply', id, result} (or the worker's usual {type:'error',
// id, message}). The runs live in the wasm (web::teach over distill::lockstep, web::recover over
// distill::recover, web::adapt over lora::train); this file only unpacks messages and transfers
// byte buffers.
//
//   teach-presets                         -> [preset, …]
//   teach-setup-from-hash {hash}          -> setup (checked; defaults for missing keys)
//   teach-setup-to-hash {setup}           -> hash
//   teach-open {bytes, model, reference?, setup, backend, cachedChoice}
//                                         -> {grid, held_out_from, teacher, teacher_ms, labels, backend, setup}
//   teach-step {n}                        -> {records: [[kd, twin], …], fault}
//   teach-evaluate                        -> {step, dice_kd, dice_scratch, reference_…, ms_per_step}
//   teach-views                           -> {teacher_mask, kd_mask, scratch_mask} (gzip NIfTI; soft view updated)
//   teach-params {T, alpha, lr, feature}  -> null
//   teach-reset {seed}                    -> null
//   teach-soft {z, T}                     -> {width, height, z, max_kl, mean_kl, teacher, student, kl} (RGBA)
//   teach-voxel {x, y, z, T}              -> logits and softmaxes of one voxel
//   teach-export {scratch, name}          -> {model_json, weights, dice} (Dice against the teacher, whole volume)
//   teach-csv                             -> text;  teach-recipe {path} -> text
//   teach-checkpoint                      -> {step, kd, scratch, record} (weights as bytes; kept by the page)
//   teach-restore {step, kd, scratch, record} -> null (after teach-open on another backend)
//   teach-poison                          -> null (test hook: the next step's patches are NaN)
//   teach-lose-device                     -> null (test hook: the next step fails as a lost GPU does)
//   recover-open {bytes, original, compressed, steps, backend, cachedChoice}
//                                         -> {teacher_ms, steps, patch} (the original runs once)
//   recover-step {n}                      -> [loss record, …]
//   recover-package                       -> {card, model_json, weights}
//   adapt-open {base, teacher?, files: [{name, bytes}], validation: [{name, bytes}], options, backend, cachedChoice}
//                                         -> {trainable, total, share, layers, training_state_bytes,
//                                             memory_mb, patch, steps, validation_dice}
//   adapt-step {n}                        -> {points: [{step, total, cross_entropy, dice, kd, ms}], memory_mb}
//   adapt-validate                        -> {step, dice}
//   adapt-adapter                         -> {config_json, weights, bytes}
//   adapt-package                         -> {card, model_json, weights}
//   adapt-close                           -> null
//   adapt-load {base, config_json, weights} -> {card, model_json, weights, r, layers} (merged; refused on another base)

export async function handleTraining(msg, ctx) {
  const { bedside, post, plain, toU8, ownBuffer } = ctx;
  const reply = (result, transfer) => post({ type: 'reply', id: msg.id, result }, transfer);
  switch (msg.type) {
    case 'teach-presets':
      return reply(plain(bedside.teach_presets()));
    case 'teach-setup-from-hash':
      return reply(plain(bedside.teach_setup_from_hash(String(msg.hash ?? ''))));
    case 'teach-setup-to-hash':
      return reply(bedside.teach_setup_to_hash(msg.setup));
    case 'teach-open': {
      const selection = await ctx.selectBackend(msg.id, msg.backend, msg.cachedChoice);
      const { json, weights } = await ctx.readPackage(msg.id, msg.model);
      post({ type: 'progress', id: msg.id, stage: `Running the teacher ${msg.model.name || msg.model.id} once on the volume…`, fraction: null });
      const reference = msg.reference ? new Uint8Array(msg.reference) : new Uint8Array(0);
      const info = plain(await bedside.teach_open(new Uint8Array(msg.bytes), json, weights, reference, msg.setup));
      return reply({ ...info, selection });
    }
    case 'teach-step':
      return reply(plain(await bedside.teach_step(msg.n)));
    case 'teach-evaluate':
      return reply(plain(await bedside.teach_evaluate()));
    case 'teach-views': {
      const raw = await bedside.teach_views();
      const masks = {};
      const buffers = [];
      for (const key of ['teacher_mask', 'kd_mask', 'scratch_mask']) {
        masks[key] = ownBuffer(toU8(raw[key]));
        buffers.push(masks[key]);
      }
      const rest = plain(raw);
      for (const key of Object.keys(masks)) delete rest[key];
      return reply({ ...rest, ...masks }, buffers);
    }
    case 'teach-params':
      bedside.teach_set_params(msg.T, msg.alpha, msg.lr, msg.feature);
      return reply(null);
    case 'teach-reset':
      bedside.teach_reset(BigInt(msg.seed));
      return reply(null);
    case 'teach-soft': {
      const v = bedside.teach_soft_view(msg.z, msg.T);
      const out = plain(v);
      for (const key of ['teacher', 'student', 'kl']) out[key] = new Uint8ClampedArray(v[key]);
      return reply(out, ['teacher', 'student', 'kl'].map((k) => out[k].buffer));
    }
    case 'teach-voxel':
      return reply(plain(bedside.teach_voxel(msg.x, msg.y, msg.z, msg.T)));
    case 'teach-export': {
      const out = await bedside.teach_export(Boolean(msg.scratch), String(msg.name));
      const weights = ownBuffer(toU8(out.weights));
      return reply({ model_json: out.model_json, weights, dice: out.dice }, [weights]);
    }
    case 'teach-csv':
      return reply(bedside.teach_csv());
    case 'teach-recipe':
      return reply(bedside.teach_recipe(String(msg.path)));
    case 'teach-poison':
      bedside.teach_poison_next_step();
      return reply(null);
    case 'teach-lose-device':
      bedside.teach_lose_device_next_step();
      return reply(null);
    case 'teach-checkpoint': {
      const c = await bedside.teach_checkpoint();
      const kd = ownBuffer(toU8(c.kd));
      const scratch = ownBuffer(toU8(c.scratch));
      return reply({ step: c.step, kd, scratch, record: c.record }, [kd, scratch]);
    }
    case 'teach-restore':
      bedside.teach_restore(msg.step, new Uint8Array(msg.kd), new Uint8Array(msg.scratch), msg.record);
      return reply(null);
    case 'recover-open': {
      await ctx.selectBackend(msg.id, msg.backend, msg.cachedChoice);
      const original = await ctx.readPackage(msg.id, msg.original);
      const compressed = await ctx.readPackage(msg.id, msg.compressed);
      post({ type: 'progress', id: msg.id, stage: `Running the original ${msg.original.name || msg.original.id} once on the volume…`, fraction: null });
      const info = plain(await bedside.recover_open(new Uint8Array(msg.bytes), original.json, original.weights, compressed.json, compressed.weights, msg.steps));
      return reply(info);
    }
    case 'recover-step':
      return reply(plain(await bedside.recover_step(msg.n)));
    case 'recover-package': {
      const out = await bedside.recover_package();
      const weights = ownBuffer(toU8(out.weights));
      return reply({ card: plain(out.card), model_json: out.model_json, weights }, [weights]);
    }
    case 'adapt-open': {
      await ctx.selectBackend(msg.id, msg.backend, msg.cachedChoice);
      const base = await ctx.readPackage(msg.id, msg.base);
      const teacher = msg.teacher ? await ctx.readPackage(msg.id, msg.teacher) : null;
      post({ type: 'progress', id: msg.id, stage: `Running ${msg.base.name || msg.base.id} once on each labelled volume…`, fraction: null });
      const names = (list) => list.map((f) => String(f.name));
      const bytes = (list) => list.map((f) => new Uint8Array(f.bytes));
      const info = await bedside.adapt_open(base.json, base.weights, names(msg.files), bytes(msg.files),
        names(msg.validation), bytes(msg.validation), teacher?.json, teacher?.weights, msg.options);
      return reply(plain(info));
    }
    case 'adapt-step':
      return reply(plain(await bedside.adapt_step(msg.n)));
    case 'adapt-validate':
      return reply(plain(await bedside.adapt_validate()));
    case 'adapt-adapter': {
      const out = await bedside.adapt_adapter();
      const weights = ownBuffer(toU8(out.weights));
      return reply({ config_json: out.config_json, bytes: out.bytes, weights }, [weights]);
    }
    case 'adapt-package': {
      const out = await bedside.adapt_package();
      const weights = ownBuffer(toU8(out.weights));
      return reply({ card: plain(out.card), model_json: out.model_json, weights }, [weights]);
    }
    case 'adapt-load': {
      const base = await ctx.readPackage(msg.id, msg.base);
      const out = bedside.adapt_load(base.json, base.weights, String(msg.config_json), new Uint8Array(msg.weights));
      const weights = ownBuffer(toU8(out.weights));
      return reply({ card: plain(out.card), model_json: out.model_json, weights, r: out.r, layers: out.layers }, [weights]);
    }
    case 'adapt-close':
      bedside.adapt_close();
      return reply(null);
    default:
      throw new Error(`unknown message type ${msg.type}`);
  }
}
