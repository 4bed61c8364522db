/** The names people know samplers by (A1111's, also what ComfyUI and most guides say), for our sampler ids.
 * The form still sends the id; an id without a known name is shown as it is. */
const KNOWN_NAMES: Record<string, string> = {
  ddim: 'DDIM',
  pndm: 'PLMS',
  euler: 'Euler',
  euler_a: 'Euler a',
  heun: 'Heun',
  dpmpp_2m: 'DPM++ 2M',
  dpmpp_2m_karras: 'DPM++ 2M Karras',
  unipc: 'UniPC',
  lcm: 'LCM',
};

export function samplerLabel(id: string): string {
  return KNOWN_NAMES[id] ?? id;
}
