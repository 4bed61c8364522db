import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FIELDS, compareWithOpenApi, describeMismatches } from '../src/index.js';

/** The worker's schema names for the SDK's types, where they differ. */
export const WORKER_SCHEMA_NAMES = {
  ImageGenerationRequest: 'JobBody',
  ImageTransformRequest: 'JobBody',
  ImageInpaintRequest: 'JobBody',
  JobRequest: 'JobBody',
  SubmitJobResponse: 'JobAccepted',
  JobInfo: 'JobView',
  WorkerLimits: 'Limits',
  WorkerDefaults: 'Defaults',
  WorkerInfo: 'Info',
} as const;

/** The per-operation request types each use part of the worker's one request body. */
export const SUBSET_SCHEMAS = ['ImageGenerationRequest', 'ImageTransformRequest', 'ImageInpaintRequest'] as const;

const specDir = fileURLToPath(new URL('../openapi/', import.meta.url));
const savedSpecs = readdirSync(specDir).filter((name) => name.endsWith('.json'));

function schema(properties: string[], extra: Record<string, unknown> = {}) {
  return { type: 'object', properties: Object.fromEntries(properties.map((p) => [p, { type: 'string' }])), ...extra };
}

/** A document that matches the SDK exactly, built from FIELDS, with parts split over $ref and allOf. */
function matchingDocument() {
  const schemas: Record<string, unknown> = {};
  for (const [name, fields] of Object.entries(FIELDS)) schemas[name] = schema([...fields]);
  const [first, ...rest] = FIELDS.WorkerInfo;
  schemas.InfoBase = schema(rest);
  schemas.WorkerInfo = { allOf: [{ $ref: '#/components/schemas/InfoBase' }, schema([first])] };
  return { openapi: '3.1.0', components: { schemas } };
}

describe('compareWithOpenApi', () => {
  it('finds nothing wrong with a document that matches, following $ref and allOf', () => {
    expect(compareWithOpenApi(matchingDocument())).toEqual([]);
  });

  it('reports a renamed field on either side, and a missing schema', () => {
    const doc = matchingDocument();
    const schemas = doc.components.schemas as Record<string, ReturnType<typeof schema>>;
    schemas.Progress = schema(['step', 'total', 'percent', 'eta_seconds']);
    delete schemas.JobList;
    const mismatches = compareWithOpenApi(doc);
    expect(mismatches).toEqual([
      { schema: 'Progress', openApiName: 'Progress', sdkOnly: ['eta_ms'], specOnly: ['eta_seconds'] },
      { schema: 'JobList', openApiName: undefined, sdkOnly: ['jobs'], specOnly: [] },
    ]);
    expect(describeMismatches(mismatches)).toContain('Progress (Progress): SDK only [eta_ms], worker only [eta_seconds]');
  });

  it('uses the worker’s names where they differ', () => {
    const doc = matchingDocument();
    const schemas = doc.components.schemas as Record<string, unknown>;
    for (const [sdkName, workerName] of Object.entries(WORKER_SCHEMA_NAMES)) {
      if (sdkName === 'JobRequest' || !SUBSET_SCHEMAS.includes(sdkName as never)) schemas[workerName] = schemas[sdkName];
      delete schemas[sdkName];
    }
    expect(compareWithOpenApi(doc)).not.toEqual([]);
    expect(compareWithOpenApi(doc, WORKER_SCHEMA_NAMES, SUBSET_SCHEMAS)).toEqual([]);
    // Without the subset rule, each per-operation type lacks the other operations' fields.
    expect(compareWithOpenApi(doc, WORKER_SCHEMA_NAMES).map((m) => m.schema)).toEqual([...SUBSET_SCHEMAS]);
  });
});

// Specs saved from real workers with ui/save-openapi.sh; each must agree with the SDK field for field.
describe.each(savedSpecs.map((name) => [name]))('saved worker spec %s', (name) => {
  it('has every SDK field and nothing the SDK lacks', () => {
    const document: unknown = JSON.parse(readFileSync(`${specDir}/${name}`, 'utf8'));
    const mismatches = compareWithOpenApi(document, WORKER_SCHEMA_NAMES, SUBSET_SCHEMAS);
    expect(mismatches, describeMismatches(mismatches)).toEqual([]);
  });
});
