// Small DOM and formatting helpers.

import type { Status } from "./types";

export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el as T;
}

/** "background_generation (10/28)" -> "Background generation (10/28)". */
export function humanize(step: string): string {
  const s = step.replace(/_/g, " ").trim();
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

export function stageLabel(st: Status): string {
  switch (st.status) {
    case "pending":
      return st.queue_position ? `Queued, ${st.queue_position} ahead` : "Queued";
    case "completed":
      return "Done";
    case "failed":
      return "Failed";
    case "stopped":
      return "Stopped";
    default:
      return st.message || (st.sub_step ? humanize(st.sub_step) : "Working…");
  }
}

export function formatEta(seconds: number): string {
  if (seconds < -0.5) return `${Math.round(-seconds)} s over the estimate`;
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `about ${s} s left`;
  return `about ${Math.floor(s / 60)} min ${s % 60} s left`;
}
