#!/usr/bin/env node
// Validate glTF/GLB files with the Khronos glTF-Validator.
// Usage: node scripts/validate-gltf.mjs a.glb [b.glb ...]
// Prints one JSON object {ok, files: [{path, errors, warnings, infos, hints, messages}]}
// and exits with code 1 if any file has an error (or cannot be read).
import { readFile } from "node:fs/promises";
import path from "node:path";
import validator from "gltf-validator";

const paths = process.argv.slice(2);
if (paths.length === 0) {
  console.error("usage: validate-gltf.mjs FILE.glb [FILE.glb ...]");
  process.exit(2);
}

const files = [];
let failed = false;
for (const file of paths) {
  try {
    const bytes = new Uint8Array(await readFile(file));
    const report = await validator.validateBytes(bytes, {
      uri: path.basename(file),
      maxIssues: 100,
      // GLBs written by the engine are self-contained: any external URI is an error.
      externalResourceFunction: (uri) =>
        Promise.reject(new Error(`external resource not allowed: ${uri}`)),
    });
    const issues = report.issues;
    files.push({
      path: file,
      errors: issues.numErrors,
      warnings: issues.numWarnings,
      infos: issues.numInfos,
      hints: issues.numHints,
      messages: issues.messages.map((m) => ({
        code: m.code,
        severity: ["error", "warning", "info", "hint"][m.severity] ?? m.severity,
        message: m.message,
        pointer: m.pointer,
      })),
    });
    if (issues.numErrors > 0) failed = true;
  } catch (err) {
    files.push({ path: file, errors: 1, warnings: 0, infos: 0, hints: 0, messages: [{ code: "READ_FAILED", severity: "error", message: String(err) }] });
    failed = true;
  }
}
console.log(JSON.stringify({ ok: !failed, files }, null, 2));
process.exit(failed ? 1 : 0);
