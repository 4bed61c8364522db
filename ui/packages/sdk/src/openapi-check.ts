/**
 * Compares the SDK's wire field names (`FIELDS` in types.ts) with the schemas of a worker's `/openapi.json`,
 * so a renamed or added field on either side is caught by a test instead of by a user.
 */
import { FIELDS, type SchemaName } from './types.js';

export interface SchemaMismatch {
  schema: SchemaName;
  /** Name of the OpenAPI schema compared with, or undefined when none was found. */
  openApiName: string | undefined;
  /** In the SDK, not in the worker's schema. */
  sdkOnly: string[];
  /** In the worker's schema, not in the SDK. */
  specOnly: string[];
}

interface SchemaObject {
  $ref?: string;
  properties?: Record<string, unknown>;
  allOf?: SchemaObject[];
  oneOf?: SchemaObject[];
  anyOf?: SchemaObject[];
}

interface OpenApiDocument {
  components?: { schemas?: Record<string, SchemaObject> };
}

/**
 * Checks every SDK schema against the document. `names` maps an SDK schema to the worker's name for it
 * where they differ; a schema is looked up under its SDK name otherwise. Schemas in `subsets` are SDK
 * refinements of a wider worker schema (one request type per operation, where the worker documents one
 * body for all): only their fields must exist on the worker's side. Returns only the mismatches.
 */
export function compareWithOpenApi(
  document: unknown,
  names: Partial<Record<SchemaName, string>> = {},
  subsets: readonly SchemaName[] = [],
): SchemaMismatch[] {
  const schemas = (document as OpenApiDocument).components?.schemas ?? {};
  const mismatches: SchemaMismatch[] = [];
  for (const schema of Object.keys(FIELDS) as SchemaName[]) {
    const openApiName = names[schema] ?? schema;
    const sdkFields: readonly string[] = FIELDS[schema];
    const found = schemas[openApiName];
    if (!found) {
      mismatches.push({ schema, openApiName: undefined, sdkOnly: [...sdkFields], specOnly: [] });
      continue;
    }
    const specFields = propertiesOf(found, schemas, new Set());
    const sdkOnly = sdkFields.filter((field) => !specFields.has(field));
    const specOnly = subsets.includes(schema) ? [] : [...specFields].filter((field) => !sdkFields.includes(field));
    if (sdkOnly.length > 0 || specOnly.length > 0) {
      mismatches.push({ schema, openApiName, sdkOnly, specOnly });
    }
  }
  return mismatches;
}

/** Property names of a schema, following `$ref` and merging `allOf` (and flattened `oneOf`/`anyOf` wrappers
 * of an object with a nullable sibling). */
function propertiesOf(schema: SchemaObject, all: Record<string, SchemaObject>, seen: Set<string>): Set<string> {
  const names = new Set<string>();
  if (schema.$ref) {
    const target = schema.$ref.replace('#/components/schemas/', '');
    const resolved = all[target];
    if (resolved && !seen.has(target)) {
      seen.add(target);
      for (const name of propertiesOf(resolved, all, seen)) names.add(name);
    }
  }
  for (const name of Object.keys(schema.properties ?? {})) names.add(name);
  for (const part of [...(schema.allOf ?? []), ...(schema.oneOf ?? []), ...(schema.anyOf ?? [])]) {
    for (const name of propertiesOf(part, all, seen)) names.add(name);
  }
  return names;
}

/** One line per mismatch, for test failure messages. */
export function describeMismatches(mismatches: SchemaMismatch[]): string {
  return mismatches
    .map((m) =>
      m.openApiName === undefined
        ? `${m.schema}: no such schema in the OpenAPI document`
        : `${m.schema} (${m.openApiName}): SDK only [${m.sdkOnly.join(', ')}], worker only [${m.specOnly.join(', ')}]`,
    )
    .join('\n');
}
