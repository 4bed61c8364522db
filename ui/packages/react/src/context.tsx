/** Puts one `SdWorkerClient` in React context so every hook below the provider talks to the same worker. */
import { createContext, useContext, type ReactNode } from 'react';
import type { SdWorkerClient } from '@sd-worker/sdk';

const ClientContext = createContext<SdWorkerClient | null>(null);

export function SdWorkerProvider({ client, children }: { client: SdWorkerClient; children: ReactNode }) {
  return <ClientContext.Provider value={client}>{children}</ClientContext.Provider>;
}

/** The client passed in, else the one from `SdWorkerProvider`. */
export function useSdWorkerClient(explicit?: SdWorkerClient): SdWorkerClient {
  const fromContext = useContext(ClientContext);
  const client = explicit ?? fromContext;
  if (!client) throw new Error('no SdWorkerClient: wrap the tree in <SdWorkerProvider client={...}> or pass one');
  return client;
}
