// A minimal MCP Apps host for the browser test, built on ext-apps' own host side (AppBridge +
// PostMessageTransport). It renders the Studio in a sandboxed srcdoc iframe under the CSP the server
// declared, and relays the app's tools/call to the test through window.adgenCallTool (a Playwright
// binding that calls the real adgen server with a real MCP client).

import { AppBridge, PostMessageTransport, type McpUiResourceCsp } from "@modelcontextprotocol/ext-apps/app-bridge";
import type { CallToolRequest, CallToolResult } from "@modelcontextprotocol/client";

declare global {
  interface Window {
    adgenCallTool: (params: CallToolRequest["params"]) => Promise<CallToolResult>;
    adgenHost: typeof host;
  }
}

// What a host derives from _meta.ui.csp (the spec's defaults when no domains are declared).
function cspFor(csp: McpUiResourceCsp | undefined): string {
  const connect = (csp?.connectDomains ?? []).join(" ");
  const res = (csp?.resourceDomains ?? []).join(" ");
  return [
    "default-src 'none'", `script-src 'unsafe-inline' ${res}`, `style-src 'unsafe-inline' ${res}`,
    `img-src data: ${res}`, `font-src data: ${res}`, `connect-src ${connect || "'none'"}`,
  ].join("; ");
}

const LIGHT = { "--color-background-primary": "#ffffff", "--color-text-primary": "#17171a" };
const DARK = { "--color-background-primary": "#1d1d21", "--color-text-primary": "#f1f1f3" };

const host = {
  downloads: [] as { uri: string; mimeType?: string; size: number }[],
  modelContext: [] as string[],
  sizes: [] as { width?: number; height?: number }[],
  bridge: null as AppBridge | null,
  initialized: false,

  async mount(html: string, csp: McpUiResourceCsp | undefined, theme: "light" | "dark"): Promise<void> {
    document.body.className = theme;
    const frame = document.createElement("iframe");
    frame.id = "frame";
    frame.setAttribute("sandbox", "allow-scripts"); // opaque origin: no cookies, no storage, no same-origin access
    const policy = `<meta http-equiv="Content-Security-Policy" content="${cspFor(csp)}">`;
    frame.srcdoc = html.replace(/<head>/i, `<head>${policy}`);
    const bridge = new AppBridge(
      null,
      { name: "adgen-test-host", version: "1.0.0" },
      { serverTools: {}, downloadFile: {}, updateModelContext: { text: {} }, openLinks: {} },
      { hostContext: { theme, displayMode: "inline", platform: "web",
                       styles: { variables: (theme === "dark" ? DARK : LIGHT) as never } } },
    );
    bridge.oncalltool = (params) => window.adgenCallTool(params);
    bridge.ondownloadfile = async ({ contents }) => {
      for (const c of contents) {
        if (c.type === "resource" && "blob" in c.resource) {
          host.downloads.push({ uri: c.resource.uri, mimeType: c.resource.mimeType, size: atob(c.resource.blob).length });
        }
      }
      return {};
    };
    bridge.onupdatemodelcontext = async ({ content }) => {
      for (const c of content ?? []) if (c.type === "text") host.modelContext.push(c.text);
      return {};
    };
    bridge.onsizechange = ({ width, height }) => {
      host.sizes.push({ width, height });
      if (height) frame.style.height = `${Math.ceil(height)}px`;
    };
    const ready = new Promise<void>((resolve) => { bridge.oninitialized = () => { host.initialized = true; resolve(); }; });
    document.body.append(frame);
    await new Promise((resolve) => frame.addEventListener("load", resolve, { once: true }));
    await bridge.connect(new PostMessageTransport(frame.contentWindow!, frame.contentWindow!));
    host.bridge = bridge;
    await ready;
  },

  /** What a host does after the model's tool call: the arguments, then the result. */
  async deliver(args: Record<string, unknown>, result: CallToolResult): Promise<void> {
    await host.bridge!.sendToolInput({ arguments: args });
    await host.bridge!.sendToolResult(result);
  },
};

window.adgenHost = host;
