// Files in and out of the tab: reading what the user picked, saving what the page made. Nothing
// here touches the network (downloads are blob: URLs made in this tab).

import { setIdleStatus, showError } from './progress.js';

/**
 * The bytes of a file the user picked, or null after saying why not ("Could not <verb> <name>: …")
 * and returning the status line to idle: larger than `maxBytes` (`tooLarge` says so: what this tab
 * can hold), or unreadable. Whether the bytes make sense (an empty file too) is the engine's to
 * say, with the CLI's message.
 */
export async function readPickedFile(file, verb, maxBytes, tooLarge) {
  const fail = (why) => {
    showError(`Could not ${verb} ${file.name}: ${why}`);
    setIdleStatus();
    return null;
  };
  if (file.size > maxBytes) return fail(tooLarge);
  try {
    return await file.arrayBuffer();
  } catch (e) {
    return fail(e.message || e);
  }
}

/** Let the browser save `blob` as `name` (a temporary link to a blob: URL, clicked). */
export function saveBlob(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  // Revoked later, not at once: the download may still be reading it.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
