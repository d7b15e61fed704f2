// The edit form: copy, position, colour and font. It sends only the fields that differ from the job's
// own parameters, so edit_ad can keep the scene when nothing but the text layer changed.

import { $ } from "./ui";
import type { FontInfo, Status } from "./types";

const TEXT_FIELDS = ["text_content", "subline", "cta", "badge", "price"] as const;
const POSITIONS = ["top", "center", "bottom", "auto"];

type Changes = Record<string, unknown>;

function hex(color: unknown): string | null {
  if (typeof color !== "string") return null;
  const c = color.trim().toLowerCase();
  if (/^#[0-9a-f]{6}$/.test(c)) return c;
  if (/^#[0-9a-f]{3}$/.test(c)) return `#${c[1]}${c[1]}${c[2]}${c[2]}${c[3]}${c[3]}`;
  return null;
}

export class Editor {
  private base: Record<string, unknown> = {};
  private editable = false;
  private finished = false; // failed or stopped: nothing to edit
  private busy = false;
  private colorTouched = false;
  private readonly form = $<HTMLElement>("editor");
  private readonly color = $<HTMLInputElement>("f-text_color");
  private readonly colorAuto = $<HTMLInputElement>("f-color-auto");
  private readonly font = $<HTMLSelectElement>("f-font_family");

  constructor(private readonly onApply: (changes: Changes) => Promise<void>) {
    this.form.addEventListener("input", () => this.refresh());
    this.form.addEventListener("change", () => this.refresh());
    this.color.addEventListener("input", () => {
      this.colorTouched = true;
      this.colorAuto.checked = false;
      this.refresh();
    });
    // A button, not a form submission: sandboxed frames without allow-forms drop submit events.
    $("apply").addEventListener("click", () => {
      const changes = this.changes();
      if (!Object.keys(changes).length || !this.editable || this.busy) return;
      this.setBusy(true);
      void this.onApply(changes);
    });
    $("reset").addEventListener("click", () => this.load(this.base));
  }

  /** Fill the form from a job's parameters (or a tool call's arguments before the job exists). */
  load(params: Record<string, unknown>): void {
    this.base = { ...params };
    for (const name of TEXT_FIELDS) {
      const el = $<HTMLInputElement | HTMLTextAreaElement>(`f-${name}`);
      el.value = typeof params[name] === "string" ? (params[name] as string) : "";
    }
    const pos = typeof params.text_position === "string" ? params.text_position : "auto";
    for (const radio of this.form.querySelectorAll<HTMLInputElement>('input[name="text_position"]')) {
      radio.checked = radio.value === (POSITIONS.includes(pos) ? pos : "auto");
    }
    const c = hex(params.text_color);
    this.colorAuto.checked = params.text_color == null;
    this.color.value = c ?? "#ffffff";
    this.colorTouched = false;
    if (typeof params.font_family === "string") this.font.value = this.ensureFont(params.font_family);
    this.refresh();
  }

  setBase(st: Status): void {
    this.editable = st.status === "completed";
    this.finished = st.status === "failed" || st.status === "stopped";
    if (st.parameters) this.base = { ...st.parameters };
    if (st.status !== "pending" && st.status !== "running") this.busy = false;
    this.refresh();
  }

  setFonts(fonts: FontInfo[]): void {
    const keep = this.font.value || (typeof this.base.font_family === "string" ? this.base.font_family : "");
    this.font.replaceChildren();
    for (const f of fonts) {
      const opt = document.createElement("option");
      opt.value = f.id;
      opt.textContent = f.hangul ? `${f.family} · 한글` : f.family;
      opt.dataset.family = f.family;
      this.font.append(opt);
    }
    if (keep) this.font.value = this.ensureFont(keep);
    this.refresh();
  }

  setBusy(busy: boolean): void {
    this.busy = busy;
    this.refresh();
  }

  /** The fields the person changed, as edit_ad arguments (an emptied field becomes null). */
  changes(): Changes {
    const out: Changes = {};
    for (const name of TEXT_FIELDS) {
      const raw = $<HTMLInputElement | HTMLTextAreaElement>(`f-${name}`).value;
      const value = raw.trim() === "" ? null : raw;
      if ((this.base[name] ?? null) !== value) out[name] = value;
    }
    const pos = this.form.querySelector<HTMLInputElement>('input[name="text_position"]:checked')?.value;
    if (pos && pos !== (this.base.text_position ?? "auto")) out.text_position = pos;
    if (this.colorAuto.checked) {
      if (this.base.text_color != null) out.text_color = null;
    } else if (this.base.text_color == null || (this.colorTouched && this.color.value !== hex(this.base.text_color))) {
      out.text_color = this.color.value;
    }
    const font = this.font.selectedOptions[0];
    if (font && !this.sameFont(font, this.base.font_family)) out.font_family = font.value;
    return out;
  }

  /** font_family may name a font by id or by family: the option that matches (added when unknown). */
  private ensureFont(name: string): string {
    const found = [...this.font.options].find((o) => this.sameFont(o, name));
    if (found) return found.value;
    const opt = document.createElement("option");
    opt.value = name;
    opt.textContent = name;
    this.font.append(opt);
    return name;
  }

  private sameFont(option: HTMLOptionElement, name: unknown): boolean {
    if (typeof name !== "string") return false;
    const n = name.trim().toLowerCase();
    return option.value.toLowerCase() === n || (option.dataset.family ?? "").toLowerCase() === n;
  }

  private refresh(): void {
    const dirty = Object.keys(this.changes()).length > 0;
    $<HTMLButtonElement>("apply").disabled = !this.editable || this.busy || !dirty;
    $<HTMLButtonElement>("reset").disabled = this.busy || !dirty;
    $<HTMLButtonElement>("apply").textContent = this.busy ? "Applying…" : "Apply edits";
    $("edit-hint").textContent = this.editable || this.busy
      ? "Edits re-render the text layer on the same scene."
      : this.finished ? "This job made no ad to edit." : "Edits open once the job has finished.";
  }
}
