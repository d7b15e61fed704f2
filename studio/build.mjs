// Builds the Studio into ONE self-contained HTML document (scripts and styles inline, nothing fetched)
// and, for the browser test, a host page built on ext-apps' own AppBridge.
//
//   node build.mjs            write ../mcp_server/studio/studio.html and ../tests/data/studio-host.html
//   node build.mjs --check    build twice in memory; fail unless both builds and the committed files agree
import { build, transform } from "esbuild";
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");
const MAX_BYTES = 1024 * 1024;

// Also enforced by the document itself, whatever CSP the host applies: nothing may leave the page.
export const CSP = [
  "default-src 'none'", "script-src 'unsafe-inline'", "style-src 'unsafe-inline'", "img-src data: blob:",
  "font-src data:", "media-src data:", "connect-src 'none'", "frame-src 'none'", "object-src 'none'",
  "base-uri 'none'", "form-action 'none'",
].join("; ");

const TARGETS = [
  { entry: "src/main.ts", template: "src/index.html", css: "src/styles.css", out: "mcp_server/studio/studio.html" },
  { entry: "test-host/host.ts", template: "test-host/host.html", css: null, out: "tests/data/studio-host.html" },
];

async function bundleJs(entry) {
  const result = await build({
    entryPoints: [path.join(here, entry)],
    bundle: true,
    write: false,
    format: "iife",
    platform: "browser",
    target: ["chrome120", "firefox120", "safari17"],
    minify: true,
    charset: "utf8",
    legalComments: "eof",
    logLevel: "warning",
    define: { "process.env.NODE_ENV": '"production"' },
  });
  const js = result.outputFiles[0].text;
  if (/<\/script/i.test(js)) throw new Error(`${entry}: the bundle contains "</script", which would end the inline script`);
  return js;
}

async function render(target) {
  const template = await readFile(path.join(here, target.template), "utf8");
  const js = await bundleJs(target.entry);
  const css = target.css
    ? (await transform(await readFile(path.join(here, target.css), "utf8"), { loader: "css", minify: true, charset: "utf8" })).code
    : "";
  // split/join, not String.replace: the bundle contains "$&"-like sequences replace() would interpret.
  const html = template.split("%CSP%").join(CSP).split("%STYLE%").join(css.trim()).split("%SCRIPT%").join(js.trim());
  return Buffer.from(html, "utf8");
}

async function buildAll() {
  const out = new Map();
  for (const target of TARGETS) out.set(target.out, await render(target));
  const studio = out.get(TARGETS[0].out);
  if (studio.length >= MAX_BYTES) throw new Error(`studio.html is ${studio.length} bytes, over the 1 MiB MCP Apps budget`);
  return out;
}

const check = process.argv.includes("--check");
const first = await buildAll();
if (check) {
  const second = await buildAll();
  let ok = true;
  for (const [file, bytes] of first) {
    if (!bytes.equals(second.get(file))) {
      console.error(`${file}: two builds differ (not reproducible)`);
      ok = false;
    }
    const committed = await readFile(path.join(repo, file)).catch(() => null);
    if (!committed || !committed.equals(bytes)) {
      console.error(`${file}: the committed file is not what the sources build (run: make studio)`);
      ok = false;
    }
  }
  if (!ok) process.exit(1);
  console.log(`studio: reproducible, committed builds up to date (${first.get(TARGETS[0].out).length} bytes)`);
} else {
  for (const [file, bytes] of first) {
    await writeFile(path.join(repo, file), bytes);
    console.log(`wrote ${file} (${bytes.length} bytes)`);
  }
}
