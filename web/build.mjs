// Bundles the dashboard's scripts (ours and ECharts, SVG renderer only) into the Python
// package: src/tierwise/dashboard/static/build/app.js. Run by `make setup` and `npm run build`.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
await build({
  entryPoints: [path.join(here, "src", "app.js")],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  legalComments: "linked",
  outfile: path.join(here, "..", "src", "tierwise", "dashboard", "static", "build", "app.js"),
  logLevel: "info",
});
