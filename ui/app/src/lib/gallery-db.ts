/** The gallery's storage: one IndexedDB object store of finished images (PNG blob + the request that made it). */
import type { Operation } from '@sd-worker/sdk';

export interface GalleryItem {
  /** `${jobId}-${index}` */
  id: string;
  createdAt: number;
  operation: Operation;
  /** The request's fields, without its input images. */
  params: Record<string, unknown>;
  seed: number | null;
  width: number;
  height: number;
  model: string | null;
  png: Blob;
}

const DB_NAME = 'sd-worker-ui';
const STORE = 'images';

let opening: Promise<IDBDatabase> | null = null;

function open(): Promise<IDBDatabase> {
  opening ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      const store = request.result.createObjectStore(STORE, { keyPath: 'id' });
      store.createIndex('createdAt', 'createdAt');
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opening;
}

function done<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** Newest first. */
export async function listGallery(): Promise<GalleryItem[]> {
  const db = await open();
  const items = await done(db.transaction(STORE).objectStore(STORE).index('createdAt').getAll() as IDBRequest<GalleryItem[]>);
  return items.reverse();
}

export async function putGalleryItem(item: GalleryItem): Promise<void> {
  const db = await open();
  await done(db.transaction(STORE, 'readwrite').objectStore(STORE).put(item));
}

export async function deleteGalleryItem(id: string): Promise<void> {
  const db = await open();
  await done(db.transaction(STORE, 'readwrite').objectStore(STORE).delete(id));
}
