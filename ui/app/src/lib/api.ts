/** The app's one client: same origin as the page, bearer token from localStorage (set by the key prompt). */
import { SdWorkerClient } from '@sd-worker/sdk';

const KEY_STORAGE = 'sd-worker.api-key';

export function storedApiKey(): string | null {
  try {
    return localStorage.getItem(KEY_STORAGE);
  } catch {
    return null; // storage disabled: the key lives for this page only
  }
}

let sessionKey: string | null = null;

export function saveApiKey(key: string): void {
  sessionKey = key;
  try {
    localStorage.setItem(KEY_STORAGE, key);
  } catch {
    // keep it in memory
  }
}

export const client = new SdWorkerClient({ apiKey: () => sessionKey ?? storedApiKey() });
