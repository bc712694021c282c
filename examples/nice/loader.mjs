// Module hooks that let Node 20 load NICE CXone's browser SDKs (@nice-devone/*) unmodified.
//
// Use: node --import ./loader.mjs --import ./shims.mjs agent_flow.mjs
//
// The SDKs are published for a bundler (webpack), not for Node:
//  - auth/agent/acd/core-sdk are ES modules, but their package.json has no "type": "module", so
//    Node would read them as CommonJS; common-sdk is CommonJS (its .js files use require()).
//    load() below picks the format per file by looking at the source.
//  - their imports have no extension ('./lib/cxone-auth') or name a folder ('../../adapter');
//    resolve() below retries with '.js' and '/index.js', as a bundler does.
//  - a few files import non-JS assets (css, svg, images) for the UI; they load as empty modules.
//  - JSON imported without an import attribute loads as a default export.
// Bare package names are resolved from the SDK install prefix, NICE_SDK_DIR (default:
// ../../target/examples/nice relative to this file, where `npm install --prefix` put them), when
// the importing file is not inside a node_modules folder (so a script anywhere can import the SDKs).
import { register } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import { readFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

if (isMainThread) {
  register(import.meta.url, { data: { sdkDir: process.env.NICE_SDK_DIR } });
}

let sdkParent;
export function initialize(data) {
  const dir = data?.sdkDir
    ? path.resolve(data.sdkDir)
    : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../target/examples/nice');
  sdkParent = pathToFileURL(path.join(dir, 'package.json')).href;
}

const ASSET = /\.(css|scss|sass|less|svg|png|jpe?g|gif|woff2?|ttf|eot|mp3|wav)$/i;
const isBare = (s) => !s.startsWith('.') && !s.startsWith('/') && !/^[a-z]+:/i.test(s);

export async function resolve(specifier, context, next) {
  if (ASSET.test(specifier)) {
    return { url: 'data:text/javascript,export default ""', shortCircuit: true };
  }
  try {
    return await next(specifier, context);
  } catch (err) {
    const code = err?.code;
    if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'ERR_UNSUPPORTED_DIR_IMPORT') throw err;
    if (isBare(specifier)) {
      // A deep import without extension inside a package ('rxjs/fetch' works, 'lodash/get' doesn't).
      const parent = context.parentURL && context.parentURL.includes('/node_modules/')
        ? context.parentURL : sdkParent;
      for (const s of [specifier, specifier + '.js', specifier + '/index.js']) {
        try { return await next(s, { ...context, parentURL: parent }); } catch { /* next */ }
      }
      throw err;
    }
    for (const suffix of ['.js', '/index.js', '.mjs', '.json']) {
      try { return await next(specifier + suffix, context); } catch { /* next */ }
    }
    throw err;
  }
}

export async function load(url, context, next) {
  if (url.startsWith('file:') && url.endsWith('.json') && !context.importAttributes?.type) {
    const text = await readFile(fileURLToPath(url), 'utf8');
    return { format: 'module', source: `export default ${text};`, shortCircuit: true };
  }
  if (url.startsWith('file:') && url.includes('/node_modules/') && url.endsWith('.js')) {
    const result = await next(url, context);
    if (result.format === 'commonjs' || result.format == null) {
      const source = result.source ?? (await readFile(fileURLToPath(url)));
      const text = source.toString();
      // ESM syntax at the start of a line, and no CommonJS marker: an ES module.
      if (/^\s*(import\s*[\w{*'"]|export\s+[\w{*])/m.test(text) && !/^"use strict";\s*Object\.defineProperty\(exports/m.test(text)) {
        return { format: 'module', source: text, shortCircuit: true };
      }
      // Node 20 does not pass CommonJS source through; leave it to the default loader.
      return { format: 'commonjs', shortCircuit: true };
    }
    return result;
  }
  return next(url, context);
}
