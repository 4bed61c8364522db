// Runs the mock worker from the command line: node mock-server/main.mjs [--port 8600] [--api-key KEY]
// [--static app/dist] [--step-delay-ms 60]
import { startMockWorker } from './mock-worker.mjs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(name);
  return index === -1 ? fallback : args[index + 1];
};
const mock = await startMockWorker({
  port: Number(option('--port', '8600')),
  apiKey: option('--api-key', undefined),
  staticDir: option('--static', undefined),
  stepDelayMs: Number(option('--step-delay-ms', '60')),
});
console.log(`mock sd-worker listening on ${mock.url}`);
