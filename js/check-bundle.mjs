// Fail if the committed bundle differs from what `npm run build` makes of js/src now.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as esbuild from "esbuild";
import { BUNDLE, options } from "./build.mjs";

const result = await esbuild.build({ ...options, write: false });
const built = result.outputFiles[0].text;
const committed = await readFile(join(String(options.absWorkingDir), BUNDLE), "utf8").catch(() => null);
if (built !== committed) {
  console.error(`${BUNDLE} is stale: run npm run build`);
  process.exit(1);
}
