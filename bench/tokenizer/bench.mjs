// The reference side of bench/tokenizer: @lenml/tokenizers (the Hugging Face tokenizers ported to
// JavaScript) encoding the same GSM8K documents the same way as bench_tok.c.
// usage: node bench.mjs NODE_MODULES_DIR PACKAGE GSM8K_TRAIN_JSONL [PASSES]
import fs from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [mods, pkg, file, passArg] = process.argv.slice(2);
const passes = Math.max(1, Number(passArg || 3));
const require = createRequire(pathToFileURL(mods + "/"));
const { fromPreTrained } = await import(pathToFileURL(require.resolve(pkg)).href);
const tok = fromPreTrained();
const docs = fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim())
  .map((l) => JSON.parse(l)).map((d) => d.question + "\n" + d.answer);
const bytes = docs.reduce((s, d) => s + Buffer.byteLength(d, "utf8"), 0);
let ids = 0;
const t0 = process.hrtime.bigint();
for (let p = 0; p < passes; p++) {
  ids = 0;
  for (const d of docs) ids += tok.encode(d).length;
}
const dt = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(`js MB/s ${(bytes * passes / dt / 1e6).toFixed(2)} ids ${ids} docs ${docs.length} bytes ${bytes}`);
