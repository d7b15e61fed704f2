// Images arrive through the app-only studio_image tool: base64 slices of at most ~512 KiB of file, so no
// single tool result comes near the 1 MiB hosts accept, reassembled here into bytes and a data: URL
// (the default MCP Apps CSP allows data: images; blob: is not guaranteed).

import type { CallToolResult } from "@modelcontextprotocol/client";
import type { ImageChunk } from "./types";

export type Caller = (name: string, args: Record<string, unknown>) => Promise<CallToolResult>;

export interface LoadedImage {
  bytes: Uint8Array;
  base64: string;
  mime: string;
  dataUrl: string;
  width: number;
  height: number;
}

const MAX_PARTS = 64; // 32 MiB: far beyond any ad; a runaway loop ends here

function decode(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function encode(bytes: Uint8Array): string {
  let bin = "";
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) bin += String.fromCharCode(...bytes.subarray(i, i + step));
  return btoa(bin);
}

async function chunk(call: Caller, args: Record<string, unknown>): Promise<ImageChunk> {
  const result = await call("studio_image", args);
  const c = result.structuredContent as ImageChunk | undefined;
  if (!c || typeof c.data !== "string") throw new Error("studio_image answered without image data");
  return c;
}

/** The whole file, slice by slice. */
export async function fetchImage(call: Caller, jobId: string, artifact: string): Promise<LoadedImage> {
  const parts: Uint8Array[] = [];
  let offset = 0;
  let first: ImageChunk | undefined;
  for (let i = 0; i < MAX_PARTS; i++) {
    const c = await chunk(call, { job_id: jobId, artifact, offset });
    first ??= c;
    const bytes = decode(c.data);
    parts.push(bytes);
    offset += bytes.length;
    if (c.done || bytes.length === 0) break;
  }
  if (!first) throw new Error("no data");
  if (offset !== first.total_bytes) throw new Error(`got ${offset} of ${first.total_bytes} bytes`);
  const bytes = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  const base64 = parts.length === 1 ? first.data : encode(bytes);
  return { bytes, base64, mime: first.mime_type, dataUrl: `data:${first.mime_type};base64,${base64}`,
           width: first.width, height: first.height };
}

/** A small JPEG copy (one call) for the gallery. */
export async function thumbnail(call: Caller, jobId: string, artifact: string, side: number): Promise<string> {
  const c = await chunk(call, { job_id: jobId, artifact, max_side: side });
  return `data:${c.mime_type};base64,${c.data}`;
}
