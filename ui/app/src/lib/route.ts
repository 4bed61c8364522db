/** A three-route router on the History API (the worker answers index.html for these paths). */
import { useCallback, useEffect, useState } from 'react';

export type Mode = 'txt2img' | 'img2img' | 'inpaint';

export const MODE_PATHS: Record<Mode, string> = { txt2img: '/', img2img: '/img2img', inpaint: '/inpaint' };

function modeOf(pathname: string): Mode {
  if (pathname.startsWith('/img2img')) return 'img2img';
  if (pathname.startsWith('/inpaint')) return 'inpaint';
  return 'txt2img';
}

export function useMode(): [Mode, (mode: Mode) => void] {
  const [mode, setMode] = useState<Mode>(() => modeOf(window.location.pathname));
  useEffect(() => {
    const onPop = () => setMode(modeOf(window.location.pathname));
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);
  const navigate = useCallback((next: Mode) => {
    if (window.location.pathname !== MODE_PATHS[next]) window.history.pushState(null, '', MODE_PATHS[next]);
    setMode(next);
  }, []);
  return [mode, navigate];
}
