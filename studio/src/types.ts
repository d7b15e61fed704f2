// The parts of adgen's StatusResponse (pipeline/schemas.py) the Studio reads.

export type JobState = "pending" | "running" | "completed" | "failed" | "stopped";
export const TERMINAL: ReadonlySet<string> = new Set(["completed", "failed", "stopped"]);

export interface ResultEntry {
  placement?: string | null;
  variant?: string | number | null;
  width?: number | null;
  height?: number | null;
  uri?: string | null;
  path?: string | null;
}

export interface Status {
  job_id: string;
  status: JobState;
  progress_percent: number;
  current_step?: string | null;
  sub_step?: string | null;
  message?: string;
  elapsed_sec?: number;
  eta_seconds?: number | null;
  queue_position?: number | null;
  error?: string | null;
  warnings?: string[];
  output_file?: string | null;
  parent_job_id?: string | null;
  design_note?: string | null;
  edit_note?: string | null;
  step1_result?: string | null;
  parameters?: Record<string, unknown>;
  final_result?: string | null;
  results?: ResultEntry[] | null;
}

export interface ImageChunk {
  job_id: string;
  artifact: string;
  mime_type: string;
  offset: number;
  total_bytes: number;
  data: string;
  done: boolean;
  width: number;
  height: number;
}

export interface FontInfo {
  id: string;
  family: string;
  hangul?: boolean;
}

export function isStatus(value: unknown): value is Status {
  const v = value as Partial<Status> | null;
  return !!v && typeof v.job_id === "string" && typeof v.status === "string";
}

/** adgen://jobs/<job_id>/<artifact> -> its parts (null for anything else). */
export function parseJobUri(uri: string | null | undefined): { jobId: string; artifact: string } | null {
  const m = /^adgen:\/\/jobs\/([0-9a-f]{32})\/([A-Za-z0-9._-]+)$/.exec(uri ?? "");
  return m ? { jobId: m[1], artifact: m[2] } : null;
}
