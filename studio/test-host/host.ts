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
    document.documentElement.className = theme;
    const frame = document.createElement("iframe");
    frame.id = "frame";
    frame.setAttribute("sandbox", "allow-scripts"); // opaque origin: no cookies, no storage, no same-origin access
    const policy = `<meta http-equiv="Content-Security-Policy" content="${cspFor(csp)}">`;
    const srcdoc = html.replace(/<head>/i, `<head>${policy}`);
    const bridge = new AppBridge(
      null,
      { name: "adgen-test-host", version: "1.0.0" },
      { serverTools: {}, downloadFile: {}, updateModelContext: { text: {} }, openLinks: {} },
      { hostContext: { theme, displayMode: "inline", platform: "web",
                       toolInfo: { tool: { name: "generate_ad", inputSchema: { type: "object" } } },
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
    // Listen before the document runs: the app sends ui/initialize as soon as its script starts. The
    // iframe's WindowProxy stays the same when srcdoc navigates it, so the transport can bind to it now.
    document.body.append(frame);
    await bridge.connect(new PostMessageTransport(frame.contentWindow!, frame.contentWindow!));
    host.bridge = bridge;
    frame.srcdoc = srcdoc;
    await ready;
  },

  /** What a host does around the model's tool call: the arguments when it starts, the result when it answers. */
  async input(args: Record<string, unknown>): Promise<void> {
    await host.bridge!.sendToolInput({ arguments: args });
  },
  async result(result: CallToolResult): Promise<void> {
    await host.bridge!.sendToolResult(result);
  },
};

window.adgenHost = host;
