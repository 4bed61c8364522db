/** The prompt tag of a LoRA picked from the list (`<lora:NAME:WEIGHT>`, as A1111's extra-networks cards add). */

/** `prompt` with `<lora:name:weight>` added at the end, after a space when the prompt does not end in one. */
export function appendLoraTag(prompt: string, name: string, weight = 1): string {
  const tag = `<lora:${name}:${weight}>`;
  if (prompt === '' || /\s$/.test(prompt)) return `${prompt}${tag}`;
  return `${prompt} ${tag}`;
}
