// adgen Studio: an MCP App (ext-apps `App`) shown beside generate_ad / get_status / edit_ad results.
// Everything reaches the server as tools/call through the host; the document loads nothing itself.

import {
  App,
  applyDocumentTheme,
  applyHostFonts,
  applyHostStyleVariables,
  type McpUiHostContext,
} from "@modelcontextprotocol/ext-apps";
import type { CallToolResult } from "@modelcontextprotocol/client";

import { fetchImage, thumbnail, type LoadedImage } from "./images";
import { Editor } from "./editor";
import { $, formatEta, stageLabel } from "./ui";
import { TERMINAL, isStatus, parseJobUri, type FontInfo, type ResultEntry, type Status } from "./types";

const POLL_MS = 700;

const app = new App({ name: "adgen-studio", version: "0.1.0" }, {}, { autoResize: true });

let current: Status | null = null;
let token = 0; // bumped whenever the Studio follows another job: stale polls and loads drop their answers
let pollTimer: ReturnType<typeof setTimeout> | undefined;
let lastUpdate = 0; // performance.now() of the last status, for the ETA countdown between polls
let shown: { jobId: string; entry: ResultEntry; image: LoadedImage } | null = null;

const root = $<HTMLElement>("studio");
const img = $<HTMLImageElement>("final");
const viewer = $<HTMLElement>("viewer");
const notes = $<HTMLElement>("notes");

function textOf(result: CallToolResult): string {
  return (result.content ?? [])
    .map((c) => (c.type === "text" ? c.text : ""))
    .filter(Boolean)
    .join("\n");
}

async function call(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  const result = await app.callServerTool({ name, arguments: args });
  if (result.isError) throw new Error(textOf(result) || `${name} failed`);
  return result;
}

function note(text: string, error = false): void {
  const el = document.createElement("div");
  el.className = error ? "note error" : "note";
  el.textContent = text;
  notes.append(el);
}

function clearNotes(): void {
  notes.replaceChildren();
}

// -- progress ---------------------------------------------------------------------------------------

function renderStatus(st: Status): void {
  root.dataset.state = st.status;
  root.dataset.job = st.job_id;
  $("job-id").textContent = st.job_id.slice(0, 12);
  $("job-id").title = `Job ${st.job_id}${st.parent_job_id ? `, edited from ${st.parent_job_id}` : ""}`;
  const pill = $("status-pill");
  pill.dataset.status = st.status;
  pill.textContent = st.status[0].toUpperCase() + st.status.slice(1);
  $("stage").textContent = stageLabel(st);
  const pct = Math.max(0, Math.min(100, Math.round(st.progress_percent)));
  $("percent").textContent = `${pct}%`;
  $("fill").style.width = `${pct}%`;
  $("track").setAttribute("aria-valuenow", String(pct));
  $<HTMLButtonElement>("stop").disabled = TERMINAL.has(st.status);
  renderClock();
}

function renderClock(): void {
  const st = current;
  if (!st) return;
  const since = (performance.now() - lastUpdate) / 1000;
  const running = !TERMINAL.has(st.status);
  $("eta").textContent = running && st.eta_seconds != null ? formatEta(st.eta_seconds - since) : "";
  const elapsed = (st.elapsed_sec ?? 0) + (running ? since : 0);
  $("elapsed").textContent = elapsed > 0 ? `${elapsed.toFixed(1)} s elapsed` : "";
}
setInterval(renderClock, 250);

function renderNotes(st: Status): void {
  clearNotes();
  if (st.status === "failed" || st.status === "stopped") note(st.error || st.message || `Job ${st.status}.`, true);
  for (const w of st.warnings ?? []) note(w);
  if (st.edit_note) note(st.edit_note);
  if (st.design_note) note(st.design_note);
  if (st.status === "completed" && st.output_file) note(`Saved on the server at ${st.output_file}`);
}

/** Follow a job from now on (a tool result, or the job an edit started). */
function follow(st: Status): void {
  if (current?.job_id === st.job_id) {
    // The same job again (the tool result of a job the app already found): keep what is under way.
    if (!TERMINAL.has(current.status)) update(st, token);
    return;
  }
  token += 1;
  editor.load(st.parameters ?? {});
  update(st, token);
}

function update(st: Status, t: number): void {
  if (t !== token) return;
  const wasTerminal = current?.job_id === st.job_id && TERMINAL.has(current.status);
  current = st;
  lastUpdate = performance.now();
  clearTimeout(pollTimer); // one polling chain at a time
  renderStatus(st);
  editor.setBase(st);
  if (!TERMINAL.has(st.status)) {
    pollTimer = setTimeout(() => void poll(t), POLL_MS);
    if (st.step1_result && scenePreviewFor !== st.job_id) void showScene(st.job_id, t);
    return;
  }
  if (!wasTerminal) {
    renderNotes(st);
    if (st.status === "completed") void showResults(st, t);
  }
}

async function poll(t: number): Promise<void> {
  if (t !== token || !current) return;
  try {
    const result = await call("get_status", { job_id: current.job_id, include_preview: false });
    if (isStatus(result.structuredContent)) update(result.structuredContent, t);
  } catch (err) {
    if (t !== token) return;
    note(`Status unavailable: ${(err as Error).message}`, true);
    pollTimer = setTimeout(() => void poll(t), POLL_MS * 4);
  }
}

// -- results ----------------------------------------------------------------------------------------

function entriesOf(st: Status): ResultEntry[] {
  if (st.results && st.results.length) return st.results;
  const p = st.parameters ?? {};
  return [{ uri: st.final_result, width: p.width as number, height: p.height as number }];
}

function entryLabel(e: ResultEntry, i: number): string {
  const parts = [e.placement, e.variant != null && e.variant !== 1 ? `v${e.variant}` : null].filter(Boolean);
  return parts.length ? parts.join(" ") : `#${i + 1}`;
}

function entrySize(e: ResultEntry): string {
  return e.width && e.height ? `${e.width}×${e.height}` : "";
}

async function showResults(st: Status, t: number): Promise<void> {
  const entries = entriesOf(st);
  const gallery = $("gallery");
  gallery.replaceChildren();
  gallery.hidden = entries.length < 2;
  await showEntry(st.job_id, entries[0], t);
  if (entries.length < 2) return;
  entries.forEach((entry, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.setAttribute("aria-pressed", String(i === 0));
    const thumb = document.createElement("img");
    thumb.alt = entryLabel(entry, i);
    const label = document.createElement("span");
    label.textContent = entryLabel(entry, i);
    const size = document.createElement("span");
    size.className = "size";
    size.textContent = entrySize(entry);
    button.title = `${entryLabel(entry, i)} ${entrySize(entry)}`.trim();
    button.append(thumb, label, size);
    button.addEventListener("click", () => {
      for (const b of gallery.querySelectorAll(".thumb")) b.setAttribute("aria-pressed", String(b === button));
      void showEntry(st.job_id, entry, token);
    });
    gallery.append(button);
    const where = parseJobUri(entry.uri);
    if (where) {
      thumbnail(call, where.jobId, where.artifact, 240)
        .then((src) => { thumb.src = src; })
        .catch(() => { thumb.alt = `${thumb.alt} (unavailable)`; });
    }
  });
}

// A long job's scene (step 1) is shown, downscaled, while its text layer is still being made.
let scenePreviewFor = "";

async function showScene(jobId: string, t: number): Promise<void> {
  scenePreviewFor = jobId;
  try {
    const src = await thumbnail(call, jobId, "step1.png", 1024);
    if (t !== token || current?.job_id !== jobId || TERMINAL.has(current.status)) return;
    img.src = src;
    img.hidden = false;
    img.dataset.job = "";
    img.dataset.preview = "step1";
    $("placeholder").hidden = true;
    $("dims").textContent = "Scene (step 1), the copy comes next";
    $<HTMLButtonElement>("download").disabled = true;
    shown = null;
  } catch {
    // no scene yet or an older server: the final image will come
  }
}

async function showEntry(jobId: string, entry: ResultEntry, t: number): Promise<void> {
  const where = parseJobUri(entry.uri) ?? { jobId, artifact: "final.png" };
  try {
    const image = await fetchImage(call, where.jobId, where.artifact);
    if (t !== token) return;
    img.src = image.dataUrl;
    await img.decode();
    if (t !== token) return;
    img.hidden = false;
    img.dataset.job = jobId;
    delete img.dataset.preview;
    $("placeholder").hidden = true;
    $("dims").textContent = `${img.naturalWidth}×${img.naturalHeight} px`;
    $<HTMLButtonElement>("download").disabled = false;
    $<HTMLButtonElement>("zoom").disabled = false;
    shown = { jobId, entry, image };
  } catch (err) {
    if (t === token) note(`Could not load the image: ${(err as Error).message}`, true);
  }
}

// -- actions ----------------------------------------------------------------------------------------

async function download(): Promise<void> {
  if (!shown) return;
  const { jobId, entry } = shown;
  const main = !parseJobUri(entry.uri) || entry.uri === current?.final_result;
  // The main result downloads as delivered (its output format); a gallery entry as shown.
  let image = shown.image;
  let name = entry.path?.split(/[\\/]/).pop() || `adgen-${jobId.slice(0, 8)}.png`;
  if (main && current?.job_id === jobId) {
    try {
      image = await fetchImage(call, jobId, "download");
      name = current.output_file?.split(/[\\/]/).pop() || name;
    } catch {
      // the delivered copy is optional: the PNG on screen is the same ad
    }
  }
  const caps = app.getHostCapabilities();
  if (caps?.downloadFile) {
    // Sandboxed iframes may not start downloads themselves: the host saves it (after asking the person).
    const result = await app.downloadFile({
      contents: [{ type: "resource", resource: { uri: `adgen://jobs/${jobId}/${name}`, mimeType: image.mime, blob: image.base64 } }],
    });
    if (!result.isError) return;
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([image.bytes as BlobPart], { type: image.mime }));
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

async function stop(): Promise<void> {
  if (!current) return;
  $<HTMLButtonElement>("stop").disabled = true;
  try {
    await call("stop_job", { job_id: current.job_id });
  } catch (err) {
    note(`Stop failed: ${(err as Error).message}`, true);
  }
  clearTimeout(pollTimer);
  void poll(token);
}

async function applyEdits(changes: Record<string, unknown>): Promise<void> {
  if (!current) return;
  const from = current.job_id;
  clearNotes();
  try {
    // wait_seconds 0: answer with the new job at once, so its progress shows here (as for generate_ad).
    const result = await call("edit_ad", { job_id: from, ...changes, wait_seconds: 0 }).catch((err: Error) => {
      if (/wait_seconds/.test(err.message)) return call("edit_ad", { job_id: from, ...changes });
      throw err;
    });
    if (!isStatus(result.structuredContent)) throw new Error("edit_ad answered without a job status");
    const st = result.structuredContent;
    follow(st);
    if (app.getHostCapabilities()?.updateModelContext) {
      const fields = Object.keys(changes).join(", ");
      void app.updateModelContext({
        content: [{ type: "text", text: `In the adgen Studio the person edited ${fields} of job ${from}; the new job is ${st.job_id}.` }],
      }).catch(() => undefined);
    }
  } catch (err) {
    note(`Edit failed: ${(err as Error).message}`, true);
    editor.setBusy(false);
  }
}

const editor = new Editor((changes) => applyEdits(changes));

$("download").addEventListener("click", () => {
  void download().catch((err) => note(`Download failed: ${(err as Error).message}`, true));
});
$("stop").addEventListener("click", () => void stop());
$("zoom").addEventListener("click", () => {
  const actual = viewer.dataset.fit !== "actual";
  viewer.dataset.fit = actual ? "actual" : "fit";
  $("zoom").textContent = actual ? "Fit" : "100%";
});

// -- host -------------------------------------------------------------------------------------------

function applyContext(ctx: McpUiHostContext | undefined): void {
  if (!ctx) return;
  if (ctx.theme) applyDocumentTheme(ctx.theme);
  if (ctx.styles?.variables) applyHostStyleVariables(ctx.styles.variables);
  if (ctx.styles?.css?.fonts) applyHostFonts(ctx.styles.css.fonts);
}

// The host sends the call's arguments at once but its result only when the tool answers (generate_ad
// waits up to 40 s): meanwhile the app finds the job the call started among the newest and follows it.
const DISCOVER_TRIES = 90;

interface JobBrief {
  job_id: string;
  status: string;
  text_content?: string | null;
  width?: number | null;
  height?: number | null;
  parent_job_id?: string | null;
}

function startedBy(args: Record<string, unknown>, tool: string | undefined, j: JobBrief): boolean {
  if (j.status !== "pending" && j.status !== "running") return false;
  if (tool === "edit_ad") return j.parent_job_id === args.job_id;
  if ("text_content" in args && (args.text_content ?? null) !== (j.text_content ?? null)) return false;
  if (typeof args.width === "number" && args.width !== j.width) return false;
  return !(typeof args.height === "number" && args.height !== j.height);
}

async function followId(jobId: string, t: number): Promise<void> {
  const result = await call("get_status", { job_id: jobId, include_preview: false });
  if (t === token && isStatus(result.structuredContent)) follow(result.structuredContent);
}

async function discover(args: Record<string, unknown>, tool: string | undefined, t: number, tries = 0): Promise<void> {
  if (t !== token || current || tries >= DISCOVER_TRIES) return;
  try {
    const result = await call("studio_jobs", { limit: 10 });
    const jobs = (result.structuredContent as { jobs?: JobBrief[] } | undefined)?.jobs ?? [];
    const job = jobs.find((j) => startedBy(args, tool, j));
    if (job && t === token && !current) return await followId(job.job_id, t);
  } catch {
    return; // an older server without studio_jobs: the tool result will bring the job
  }
  setTimeout(() => void discover(args, tool, t, tries + 1), POLL_MS);
}

app.ontoolinput = ({ arguments: args }) => {
  if (current || !args) return;
  const tool = app.getHostContext()?.toolInfo?.tool?.name;
  if (tool !== "edit_ad" && "text_content" in args) editor.load(args);
  $("stage").textContent = "Starting the job…";
  if (typeof args.job_id === "string" && tool !== "edit_ad") {
    void followId(args.job_id, token).catch(() => undefined); // get_status: the job is known
  } else {
    void discover(args, tool, token);
  }
};
app.ontoolresult = (result) => {
  if (isStatus(result.structuredContent)) follow(result.structuredContent);
  else if (result.isError) note(textOf(result as CallToolResult) || "The tool call failed.", true);
};
app.ontoolcancelled = () => {
  if (!current) $("stage").textContent = "The tool call was cancelled.";
};
app.onhostcontextchanged = (ctx) => applyContext(ctx);
app.onteardown = async () => {
  token += 1;
  clearTimeout(pollTimer);
  return {};
};

async function loadFonts(): Promise<void> {
  try {
    const result = await call("list_fonts", {});
    const fonts = (result.structuredContent as { fonts?: FontInfo[] } | undefined)?.fonts ?? [];
    editor.setFonts(fonts);
  } catch (err) {
    note(`Fonts unavailable: ${(err as Error).message}`, true);
  }
}

void (async () => {
  await app.connect();
  applyContext(app.getHostContext());
  root.dataset.connected = "true";
  await loadFonts();
})().catch((err) => note(`Could not connect to the host: ${(err as Error).message}`, true));
