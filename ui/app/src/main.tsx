import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { SdWorkerProvider } from '@sd-worker/react';
import { App } from './App';
import { client } from './lib/api';
import './styles.css';

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <SdWorkerProvider client={client}>
        <App />
      </SdWorkerProvider>
    </StrictMode>,
  );
}
